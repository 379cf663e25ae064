//! MOSIP's finger subtypes (`Right Thumb`, `Left IndexFinger`, ...) as ISO/IEC 19794-4 finger
//! positions (1 right thumb ... 5 right little, 6 left thumb ... 10 left little).

/// The ISO finger position of a MOSIP subtype; case, blanks and a trailing `Finger` do not
/// matter. `None` for anything else (palms, unknown fingers, empty).
pub fn finger_position(subtype: &str) -> Option<u8> {
    let norm: String = subtype
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    let (base, rest) = if let Some(rest) = norm.strip_prefix("right") {
        (0, rest)
    } else if let Some(rest) = norm.strip_prefix("left") {
        (5, rest)
    } else {
        return None;
    };
    let finger = rest.strip_suffix("finger").unwrap_or(rest);
    let offset = match finger {
        "thumb" => 1,
        "index" => 2,
        "middle" => 3,
        "ring" => 4,
        "little" => 5,
        _ => return None,
    };
    Some(base + offset)
}

/// MOSIP's subtype of an ISO finger position 1-10.
pub fn mosip_subtype(position: u8) -> Option<&'static str> {
    const NAMES: [&str; 10] = [
        "Right Thumb",
        "Right IndexFinger",
        "Right MiddleFinger",
        "Right RingFinger",
        "Right LittleFinger",
        "Left Thumb",
        "Left IndexFinger",
        "Left MiddleFinger",
        "Left RingFinger",
        "Left LittleFinger",
    ];
    NAMES.get(usize::from(position).checked_sub(1)?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mosip_subtype_maps_to_its_iso_position_and_back() {
        for p in 1..=10 {
            let name = mosip_subtype(p).unwrap();
            assert_eq!(finger_position(name), Some(p), "{name}");
        }
        assert_eq!(finger_position("Left IndexFinger"), Some(7));
        assert_eq!(finger_position("right thumb"), Some(1));
        assert_eq!(finger_position("LEFT LITTLE FINGER"), Some(10));
        assert_eq!(finger_position("Left"), None);
        assert_eq!(finger_position("Right Palm"), None);
        assert_eq!(finger_position(""), None);
        assert_eq!(mosip_subtype(0), None);
        assert_eq!(mosip_subtype(11), None);
    }
}
