use super::*;

/// A trimmed-down document in the shape of MOSIP's 1.2 sample (namespace, `Index`, `SB`, others).
const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<BIR xmlns="http://standards.iso.org/iso-iec/19785/-3/ed-2/">
  <BIRInfo><Integrity>false</Integrity></BIRInfo>
  <!-- a finger -->
  <BIR>
    <Version><Major>1</Major><Minor>1</Minor></Version>
    <BDBInfo>
      <Index>98293c98</Index>
      <Format><Organization>Mosip</Organization><Type>7</Type></Format>
      <Type>Finger</Type>
      <Subtype>Left RingFinger</Subtype>
      <Quality><Algorithm><Organization>HMAC</Organization></Algorithm><Score>94</Score></Quality>
    </BDBInfo>
    <BDB>
      RklSAA==
    </BDB>
    <SB>ZXlK</SB>
    <others>
      <entry key="RETRIES">1</entry>
      <entry key="EXCEPTION">false</entry>
    </others>
  </BIR>
  <BIR>
    <BDBInfo><Format><Organization>Mosip</Organization><Type>7</Type></Format>
      <Type>Finger</Type><Subtype>Right Thumb</Subtype></BDBInfo>
    <BDB></BDB>
    <others><entry key="EXCEPTION">true</entry></others>
  </BIR>
  <BIR>
    <BDBInfo><Format><Organization>Mosip</Organization><Type>8</Type></Format>
      <Type>Face</Type><Subtype></Subtype></BDBInfo>
    <BDB>-_8=</BDB>
  </BIR>
</BIR>"#;

#[test]
fn mosip_sample_reads_with_exceptions_and_both_base64_alphabets() {
    let birs = parse(SAMPLE.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(birs.len(), 3);
    assert_eq!(birs[0].modality, Modality::Finger);
    assert_eq!(birs[0].subtype, "Left RingFinger");
    assert_eq!(birs[0].format_type, Some(7));
    assert_eq!(birs[0].quality, Some(94));
    assert!(!birs[0].exception);
    assert_eq!(birs[0].bdb, b"FIR\0");
    assert!(birs[1].exception);
    assert!(birs[1].bdb.is_empty());
    assert_eq!(birs[2].modality, Modality::Face);
    assert_eq!(birs[2].bdb, [0xfb, 0xff]);
}

#[test]
fn written_documents_read_back() {
    let birs = vec![
        Bir {
            modality: Modality::Finger,
            subtype: "Left IndexFinger".into(),
            format_owner: Some("Mosip".into()),
            format_type: Some(7),
            quality: Some(80),
            exception: false,
            bdb: vec![1, 2, 3, 250],
        },
        Bir {
            modality: Modality::Other("ExceptionPhoto".into()),
            subtype: String::new(),
            format_owner: Some("Mosip".into()),
            format_type: Some(8),
            quality: None,
            exception: true,
            bdb: Vec::new(),
        },
    ];
    assert_eq!(
        parse(to_xml(&birs).as_bytes(), &Limits::default()).unwrap(),
        birs
    );
}

#[test]
fn bad_documents_are_typed_errors() {
    let limits = Limits::default();
    assert!(matches!(
        parse(b"{\"json\": true}", &limits),
        Err(CbeffError::NotXml(_))
    ));
    assert!(matches!(
        parse(b"\xff\xfe", &limits),
        Err(CbeffError::NotXml(_))
    ));
    assert!(matches!(
        parse(b"<Foo/>", &limits),
        Err(CbeffError::NotBir(_))
    ));
    let dtd = b"<!DOCTYPE BIR [<!ENTITY a \"aaaa\">]><BIR>&a;</BIR>";
    assert!(matches!(parse(dtd, &limits), Err(CbeffError::NotXml(_))));
    let small = Limits {
        max_bytes: 10,
        ..limits
    };
    assert!(matches!(
        parse(SAMPLE.as_bytes(), &small),
        Err(CbeffError::TooLarge { .. })
    ));
    let few = Limits {
        max_birs: 2,
        ..limits
    };
    assert_eq!(
        parse(SAMPLE.as_bytes(), &few),
        Err(CbeffError::TooManyBirs { max: 2 })
    );
    let bad_b64 = SAMPLE.replace("RklSAA==", "R!!");
    assert!(matches!(
        parse(bad_b64.as_bytes(), &limits),
        Err(CbeffError::InvalidField {
            index: 0,
            field: "BDB",
            ..
        })
    ));
    let no_type = "<BIR><BIR><BDBInfo><Subtype>x</Subtype></BDBInfo></BIR></BIR>";
    assert!(matches!(
        parse(no_type.as_bytes(), &limits),
        Err(CbeffError::InvalidField {
            field: "BDBInfo/Type",
            ..
        })
    ));
    let nodes = Limits {
        max_nodes: 20,
        ..limits
    };
    assert!(matches!(
        parse(SAMPLE.as_bytes(), &nodes),
        Err(CbeffError::NotXml(_))
    ));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_give_birs_or_a_typed_error(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = parse(&body, &Limits::default());
        }

        #[test]
        fn any_subtype_and_bdb_round_trip(subtype in "[ -~]{0,20}", bdb in proptest::collection::vec(any::<u8>(), 0..64)) {
            let bir = Bir { modality: Modality::Finger, subtype: subtype.trim().to_string(),
                format_owner: Some("Mosip".into()), format_type: Some(7), quality: Some(1),
                exception: false, bdb };
            let back = parse(to_xml(std::slice::from_ref(&bir)).as_bytes(), &Limits::default()).unwrap();
            prop_assert_eq!(back, vec![bir]);
        }
    }
}
