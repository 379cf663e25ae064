//! The prints and photos of a case on the page, from the image store (`[store] keep_images`).
//!
//! A case's probe images are those kept with the case (a search with inline samples) or, when
//! the probe was a stored record, that record's; each candidate's are its record's (gone once
//! the record is deleted). Image URLs name the case, a side and an ordinal — never a reference
//! id: `/cases/<case>/image/<probe|cN>/<finger|face>/<ordinal>`.

use abis_proto::v1::AdjudicationCase;

use crate::images::{ImageKind, ImageStore, ImageStoreError, RecordImages};

/// Whose image: the probe's, or the n-th candidate's (from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Probe,
    Candidate(usize),
}

/// One image of a case, as its URL names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Picture {
    pub side: Side,
    pub kind: ImageKind,
    pub ordinal: u16,
}

impl Picture {
    /// Parses the part of an image URL after `/cases/<case>/image/`.
    pub fn parse(rest: &str) -> Option<Picture> {
        let mut parts = rest.split('/');
        let side = match parts.next()? {
            "probe" => Side::Probe,
            c => Side::Candidate(c.strip_prefix('c')?.parse().ok()?),
        };
        let kind = match parts.next()? {
            "finger" => ImageKind::Finger,
            "face" => ImageKind::Face,
            _ => return None,
        };
        let ordinal = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Picture {
            side,
            kind,
            ordinal,
        })
    }

    pub fn url(&self, case_id: &str) -> String {
        let side = match self.side {
            Side::Probe => "probe".to_string(),
            Side::Candidate(n) => format!("c{n}"),
        };
        let kind = match self.kind {
            ImageKind::Finger => "finger",
            ImageKind::Face => "face",
        };
        format!("/cases/{case_id}/image/{side}/{kind}/{}", self.ordinal)
    }
}

/// Which images a case has, side by side, so the page draws only what it can show.
#[derive(Default)]
pub struct Pictures {
    probe: Vec<(ImageKind, u16)>,
    candidates: Vec<Vec<(ImageKind, u16)>>,
}

impl Pictures {
    /// What the store holds for `case` (nothing without a store).
    pub fn of(
        store: Option<&ImageStore>,
        case: &AdjudicationCase,
    ) -> Result<Pictures, ImageStoreError> {
        let Some(store) = store else {
            return Ok(Pictures::default());
        };
        let list = |images: Option<RecordImages>| -> Vec<(ImageKind, u16)> {
            images
                .map(|r| r.images.iter().map(|i| (i.kind, i.ordinal)).collect())
                .unwrap_or_default()
        };
        let probe = list(load(store, case, Side::Probe)?);
        let mut candidates = Vec::with_capacity(case.candidates.len());
        for n in 0..case.candidates.len() {
            candidates.push(list(load(store, case, Side::Candidate(n))?));
        }
        Ok(Pictures { probe, candidates })
    }

    pub fn has(&self, p: Picture) -> bool {
        let list = match p.side {
            Side::Probe => Some(&self.probe),
            Side::Candidate(n) => self.candidates.get(n),
        };
        list.is_some_and(|l| l.contains(&(p.kind, p.ordinal)))
    }
}

/// The images of one side of `case`.
pub fn load(
    store: &ImageStore,
    case: &AdjudicationCase,
    side: Side,
) -> Result<Option<RecordImages>, ImageStoreError> {
    match side {
        Side::Probe => match store.get_case(&case.case_id)? {
            Some(images) => Ok(Some(images)),
            None if !case.probe_reference_id.is_empty() => store.get(&case.probe_reference_id),
            None => Ok(None),
        },
        Side::Candidate(n) => match case.candidates.get(n) {
            Some(c) => store.get(&c.reference_id),
            None => Ok(None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_urls_round_trip_and_nothing_else_parses() {
        for p in [
            Picture {
                side: Side::Probe,
                kind: ImageKind::Finger,
                ordinal: 3,
            },
            Picture {
                side: Side::Candidate(12),
                kind: ImageKind::Face,
                ordinal: 0,
            },
        ] {
            let url = p.url("ab");
            let rest = url.strip_prefix("/cases/ab/image/").unwrap();
            assert_eq!(Picture::parse(rest), Some(p));
        }
        for bad in [
            "",
            "probe",
            "probe/finger",
            "probe/finger/x",
            "c/finger/1",
            "cx/finger/1",
            "probe/iris/1",
            "probe/finger/1/2",
            "probe/finger/70000",
        ] {
            assert_eq!(Picture::parse(bad), None, "{bad}");
        }
    }
}
