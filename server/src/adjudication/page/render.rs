//! The page's HTML, rendered on the server: the prints are inline SVG (minutiae as circles
//! with a direction tick, mated pairs joined by lines), so the page needs no data API and
//! no script to draw. `page.js` only adds zoom, pan and the keyboard shortcuts. Every value
//! from a request or a record is escaped; nothing is inline script or style (the
//! Content-Security-Policy forbids both).

use std::fmt::Write;

use abis_proto::v1::{
    AdjudicationCase, CaseDecision, CasePrint, CaseState, FingerEvidence, Modality, ModalityScore,
};

use super::super::cases::decision_name;
use super::pictures::{Picture, Pictures, Side};
use crate::images::ImageKind;

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/static/page.css\">\
         <script src=\"/static/page.js\" defer></script></head><body>{body}</body></html>",
        esc(title)
    )
}

pub fn login(message: &str) -> String {
    let note = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" id=\"login-error\">{}</p>", esc(message))
    };
    document(
        "abis · sign in",
        &format!(
            "<main class=\"login\"><h1>abis adjudication</h1>{note}\
             <form method=\"post\" action=\"/login\"><label>API key \
             <input type=\"password\" name=\"key\" id=\"key\" autocomplete=\"off\" autofocus>\
             </label><button type=\"submit\" id=\"sign-in\">Sign in</button></form></main>"
        ),
    )
}

pub fn error(status: u16, code: &str, message: &str) -> String {
    document(
        "abis · error",
        &format!(
            "<main><h1>{status} {}</h1><p id=\"error-message\">{}</p>\
             <p><a href=\"/\">Back to the queue</a></p></main>",
            esc(code),
            esc(message)
        ),
    )
}

fn header(examiner: &str, csrf: &str) -> String {
    format!(
        "<header><a href=\"/\">Open cases</a><span>examiner: {}</span>\
         <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" \
         value=\"{}\"><button type=\"submit\">Sign out</button></form></header>",
        esc(examiner),
        esc(csrf)
    )
}

/// The queue: open cases, oldest first.
pub fn queue(examiner: &str, csrf: &str, cases: &[AdjudicationCase]) -> String {
    let mut rows = String::new();
    for c in cases {
        let best = c.candidates.iter().map(|k| k.score).fold(0.0, f64::max);
        let _ = write!(
            rows,
            "<tr><td><a class=\"case-link\" href=\"/cases/{id}\">{id}</a></td><td>{}</td>\
             <td>{}</td><td>{best:.1}</td></tr>",
            esc(&c.opened_at),
            c.candidates.len(),
            id = esc(&c.case_id),
        );
    }
    let body = if cases.is_empty() {
        "<p id=\"empty-queue\">No open case.</p>".to_string()
    } else {
        format!(
            "<table id=\"queue\"><thead><tr><th>case</th><th>opened (UTC)</th>\
             <th>candidates</th><th>best score</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    document(
        "abis · open cases",
        &format!(
            "{}<main><h1>Open cases</h1>{body}</main>",
            header(examiner, csrf)
        ),
    )
}

/// One case: every candidate, finger by finger, then the decision form (or the decision).
pub fn case(examiner: &str, csrf: &str, case: &AdjudicationCase, pictures: &Pictures) -> String {
    let mut body = header(examiner, csrf);
    let probe = if case.probe_reference_id.is_empty() {
        "inline samples".to_string()
    } else {
        esc(&case.probe_reference_id)
    };
    let origin = if case.dedup_job_id.is_empty() {
        String::new()
    } else {
        format!(
            " · <span id=\"origin\">duplicate group of N:N job {}</span>",
            esc(&case.dedup_job_id)
        )
    };
    let _ = write!(
        body,
        "<main id=\"case\" data-case=\"{}\"><h1>Case {}</h1><p>probe: {probe} · opened {} · \
         threshold <span id=\"threshold\">{:.1}</span>{origin}</p>",
        esc(&case.case_id),
        esc(&case.case_id),
        esc(&case.opened_at),
        case.threshold
    );
    for (i, c) in case.candidates.iter().enumerate() {
        let _ = write!(
            body,
            "<section class=\"candidate\"><h2>Candidate {}: {} — fused score \
             <span class=\"fused\">{:.1}</span></h2><p class=\"modalities\">{}</p>",
            i + 1,
            esc(&c.reference_id),
            c.score,
            modalities(&c.modalities)
        );
        body.push_str(&faces(&case.case_id, i, pictures));
        if c.fingers.is_empty() {
            body.push_str("<p>No finger position in common.</p>");
        }
        for f in &c.fingers {
            body.push_str(&finger(f, &Prints::of(&case.case_id, i, f, pictures)));
        }
        body.push_str("</section>");
    }
    body.push_str(&decision_part(csrf, case));
    body.push_str("</main>");
    document("abis · case", &body)
}

fn decision_part(csrf: &str, case: &AdjudicationCase) -> String {
    if case.state == CaseState::Decided as i32 {
        let v = case.verdict.clone().unwrap_or_default();
        return format!(
            "<p id=\"verdict\">Decided: <b>{}</b> by {} at {}. {}</p>",
            decision_name(v.decision()),
            esc(&v.examiner),
            esc(&v.decided_at),
            esc(&v.comment)
        );
    }
    let button = |d: CaseDecision, key: &str, label: &str| {
        format!(
            "<button type=\"submit\" name=\"decision\" value=\"{n}\" id=\"decide-{n}\" \
             data-key=\"{key}\">{label} <kbd>{key}</kbd></button>",
            n = decision_name(d)
        )
    };
    format!(
        "<form method=\"post\" action=\"/cases/{}/decide\" id=\"decide\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Comment <input type=\"text\" name=\"comment\" id=\"comment\" maxlength=\"2000\">\
         </label>{}{}{}</form>",
        esc(&case.case_id),
        esc(csrf),
        button(CaseDecision::Duplicate, "d", "Same person"),
        button(CaseDecision::Distinct, "n", "Different people"),
        button(CaseDecision::Inconclusive, "i", "Inconclusive"),
    )
}

/// The probe's and the candidate's first face photos side by side, at the same height, when
/// the image store has them.
fn faces(case_id: &str, candidate: usize, pictures: &Pictures) -> String {
    let photo = |side: Side, class: &str| {
        let p = Picture {
            side,
            kind: ImageKind::Face,
            ordinal: 0,
        };
        if pictures.has(p) {
            format!(
                "<figure><img class=\"face {class}\" src=\"{}\" alt=\"{class}\"></figure>",
                esc(&p.url(case_id))
            )
        } else {
            format!("<figure class=\"no-photo\">no {class} photo kept</figure>")
        }
    };
    let (probe, cand) = (
        photo(Side::Probe, "probe-face"),
        photo(Side::Candidate(candidate), "candidate-face"),
    );
    if !probe.contains("<img") && !cand.contains("<img") {
        return String::new();
    }
    format!("<div class=\"faces\">{probe}{cand}</div>")
}

/// The URLs of a finger's two print images, where the store has them.
struct Prints {
    probe: Option<String>,
    candidate: Option<String>,
}

impl Prints {
    fn of(case_id: &str, candidate: usize, f: &FingerEvidence, pictures: &Pictures) -> Prints {
        let url = |side: Side, ordinal: u32| {
            let p = Picture {
                side,
                kind: ImageKind::Finger,
                ordinal: u16::try_from(ordinal).ok()?,
            };
            pictures.has(p).then(|| p.url(case_id))
        };
        Prints {
            probe: url(Side::Probe, f.probe_print),
            candidate: url(Side::Candidate(candidate), f.candidate_print),
        }
    }
}

/// The per-modality scores Identify gave.
fn modalities(list: &[ModalityScore]) -> String {
    let parts: Vec<String> = list
        .iter()
        .map(|m| {
            let name = match Modality::try_from(m.modality) {
                Ok(Modality::Finger) => "fingers",
                Ok(Modality::Face) => "face",
                _ => "other",
            };
            format!("{name} {:.1}", m.score)
        })
        .collect();
    parts.join(" · ")
}

/// 500 ppi-equivalent pixels per print pixel, so prints of different resolutions compare.
fn scale(p: &CasePrint) -> f64 {
    if p.ppi == 0 {
        1.0
    } else {
        500.0 / f64::from(p.ppi)
    }
}

/// One finger position: both prints in one SVG (probe left, candidate right; their images
/// under the minutiae when kept), mated pairs joined across.
fn finger(f: &FingerEvidence, prints: &Prints) -> String {
    let (probe, cand) = (
        f.probe.clone().unwrap_or_default(),
        f.candidate.clone().unwrap_or_default(),
    );
    let (sp, sc) = (scale(&probe), scale(&cand));
    let gap = 40.0;
    let offset = f64::from(probe.width) * sp + gap;
    let width = offset + f64::from(cand.width) * sc;
    let height = (f64::from(probe.height) * sp).max(f64::from(cand.height) * sc);
    let mut svg = format!(
        "<div class=\"finger\" data-position=\"{}\"><h3>Finger position {} — score \
         <span class=\"finger-score\">{:.1}</span> · {} mated minutiae · alignment \
         {:.1}°, ({:.0}, {:.0}) px</h3>\
         <svg class=\"prints\" viewBox=\"0 0 {width:.0} {height:.0}\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        f.position,
        f.position,
        f.score,
        f.pairs.len(),
        f.rotation_deg,
        f.dx,
        f.dy
    );
    let _ = write!(
        svg,
        "<rect class=\"print-area\" x=\"0\" y=\"0\" width=\"{:.0}\" height=\"{:.0}\"/>\
         <rect class=\"print-area\" x=\"{offset:.0}\" y=\"0\" width=\"{:.0}\" height=\"{:.0}\"/>",
        f64::from(probe.width) * sp,
        f64::from(probe.height) * sp,
        f64::from(cand.width) * sc,
        f64::from(cand.height) * sc
    );
    let image = |svg: &mut String, url: &Option<String>, x: f64, p: &CasePrint, s: f64, side| {
        if let Some(url) = url {
            let _ = write!(
                svg,
                "<image class=\"print-image {side}\" href=\"{}\" x=\"{x:.0}\" y=\"0\" \
                 width=\"{:.0}\" height=\"{:.0}\" preserveAspectRatio=\"none\"/>",
                esc(url),
                f64::from(p.width) * s,
                f64::from(p.height) * s
            );
        }
    };
    image(&mut svg, &prints.probe, 0.0, &probe, sp, "probe-image");
    image(
        &mut svg,
        &prints.candidate,
        offset,
        &cand,
        sc,
        "candidate-image",
    );
    let at = |p: &CasePrint, i: u32, s: f64, dx: f64| {
        p.minutiae
            .get(i as usize)
            .map(|m| (f64::from(m.x) * s + dx, f64::from(m.y) * s))
    };
    for pair in &f.pairs {
        if let (Some(a), Some(b)) = (
            at(&probe, pair.probe, sp, 0.0),
            at(&cand, pair.candidate, sc, offset),
        ) {
            let _ = write!(
                svg,
                "<line class=\"mate\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>",
                a.0, a.1, b.0, b.1
            );
        }
    }
    minutiae(&mut svg, &probe, sp, 0.0, "probe-print");
    minutiae(&mut svg, &cand, sc, offset, "candidate-print");
    svg.push_str("</svg></div>");
    svg
}

fn minutiae(svg: &mut String, p: &CasePrint, s: f64, dx: f64, side: &str) {
    let _ = write!(svg, "<g class=\"minutiae {side}\">");
    for m in &p.minutiae {
        let (x, y) = (f64::from(m.x) * s + dx, f64::from(m.y) * s);
        let d = f64::from(m.direction);
        let (tx, ty) = (x + 12.0 * d.cos(), y + 12.0 * d.sin());
        let kind = if m.kind == 1 { "bifurcation" } else { "ending" };
        let _ = write!(
            svg,
            "<circle class=\"minutia {kind}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\"/>\
             <line class=\"tick\" x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{tx:.1}\" y2=\"{ty:.1}\"/>"
        );
    }
    svg.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use abis_proto::v1::{CaseCandidate, CaseVerdict};

    /// Reference ids and comments come from callers: they reach the page escaped.
    #[test]
    fn caller_text_is_escaped() {
        let hostile = "<script>alert(1)</script>\"'&";
        let case = AdjudicationCase {
            case_id: "ab".repeat(16),
            state: CaseState::Decided as i32,
            probe_reference_id: hostile.into(),
            candidates: vec![CaseCandidate {
                reference_id: hostile.into(),
                ..Default::default()
            }],
            verdict: Some(CaseVerdict {
                decision: CaseDecision::Distinct as i32,
                examiner: hostile.into(),
                comment: hostile.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let html = super::case(hostile, hostile, &case, &Pictures::default());
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
        assert!(html.contains("Decided: <b>distinct</b>"));
        assert!(!error(400, hostile, hostile).contains("<script>alert"));
    }
}
