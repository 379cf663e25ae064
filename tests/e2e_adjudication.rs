//! End-to-end: identification hits become adjudication cases, decided over gRPC and on the
//! examiner's page (plain HTTP here, headless Chromium in the second test), durable across
//! SIGKILL and written to the audit log that `abis audit verify` checks.
//!
//! Both tests enrol two impressions of the same FVC2002 DB1_B finger under different ids, so
//! the search with one finds the other, and open the case through Identify's `open_case`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use abis_proto::v1::abis_client::AbisClient;
use abis_proto::v1::adjudication_client::AdjudicationClient;
use abis_proto::v1::{
    identify_request, sample, AdjudicationCase, CaseDecision, CaseState, DecideCaseRequest,
    GetCaseRequest, IdentifyRequest, IdentifyResponse, InsertRequest, ListCasesRequest, Modality,
    Sample,
};
use abis_testkit::chromium::Browser;
use abis_testkit::http;
use support::{new_key, Server};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};

const PROBE: &str = "adj-probe-0001";
const OTHER: &str = "adj-other-0002";
/// Mated pairs the page must draw for two impressions of one finger (the matcher finds 20-40).
const MIN_MATES: usize = 8;

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut r = Request::new(message);
    let v: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
    r.metadata_mut().insert("authorization", v);
    r
}

struct Keys {
    file: PathBuf,
    office: String,
    examiner: String,
    teller: String,
    admin: String,
}

fn keys(dir: &Path) -> Keys {
    let file = dir.join("keys.toml");
    Keys {
        office: new_key(&file, "office-1", "enroll,search"),
        examiner: new_key(&file, "examiner-1", "adjudicator"),
        teller: new_key(&file, "teller-1", "verify"),
        admin: new_key(&file, "admin-1", "admin"),
        file,
    }
}

/// A server with the page on a free port; `open_cases` is `[adjudication] open_cases`,
/// `keep_images` `[store] keep_images`.
fn start(
    data: tempfile::TempDir,
    keys: &Keys,
    open_cases: &str,
    keep_images: bool,
) -> (Server, String) {
    let keep = if keep_images { "true" } else { "false" };
    let env = [
        ("ABIS__AUTH__KEYS_FILE", keys.file.as_os_str()),
        ("ABIS__ADJUDICATION__LISTEN", "127.0.0.1:0".as_ref()),
        ("ABIS__ADJUDICATION__OPEN_CASES", open_cases.as_ref()),
        ("ABIS__STORE__KEEP_IMAGES", keep.as_ref()),
    ];
    let (server, url, _stdout) = Server::start_with_page(data, &env);
    let addr = url
        .strip_prefix("http://")
        .expect("plain HTTP page")
        .to_string();
    (server, addr)
}

async fn channel(server: &Server) -> Channel {
    tonic::transport::Endpoint::from_shared(server.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn finger(path: &Path, position: u32) -> Sample {
    Sample {
        modality: Modality::Finger as i32,
        finger_position: position,
        ppi: 500.0,
        data: Some(sample::Data::Image(std::fs::read(path).expect("FVC image"))),
    }
}

/// Impression `impression` of the first `fingers` FVC fingers (at position 2 for one finger,
/// 1..=10 for ten), and with `face` the ATT subject 1's photo of the same number.
fn samples(fvc: &Path, fingers: u32, impression: u32, face: Option<&Path>) -> Vec<Sample> {
    let mut samples: Vec<Sample> = (0..fingers)
        .map(|k| {
            let position = if fingers == 1 { 2 } else { k + 1 };
            finger(&fvc.join(format!("{}_{impression}.tif", 101 + k)), position)
        })
        .collect();
    if let Some(att) = face {
        let photo = std::fs::read(att.join(format!("s1/{impression}.pgm"))).expect("ATT photo");
        samples.push(Sample {
            modality: Modality::Face as i32,
            finger_position: 0,
            ppi: 0.0,
            data: Some(sample::Data::Image(photo)),
        });
    }
    samples
}

/// Enrols two records made of impressions 1 and 2 (see [`samples`]) and opens a case by
/// searching with the first.
async fn enrol_and_open_case(
    server: &Server,
    keys: &Keys,
    fvc: &Path,
    fingers: u32,
    face: Option<&Path>,
) -> String {
    let mut abis = AbisClient::new(channel(server).await).max_decoding_message_size(64 << 20);
    for (id, impression) in [(PROBE, 1), (OTHER, 2)] {
        let samples = samples(fvc, fingers, impression, face);
        let req = InsertRequest {
            reference_id: id.into(),
            samples,
            metadata: Default::default(),
        };
        abis.insert(with_key(req, &keys.office))
            .await
            .expect("insert");
    }
    let plain = identify(server, keys, false).await;
    assert!(plain.case_id.is_empty(), "a case opened unasked");
    let found = identify(server, keys, true).await;
    assert_eq!(found.candidates.len(), 1, "{found:?}");
    assert_eq!(found.candidates[0].reference_id, OTHER);
    assert_eq!(found.case_id.len(), 32, "{found:?}");
    found.case_id
}

/// Searches with the probe record, asking for a case or not.
async fn identify(server: &Server, keys: &Keys, open_case: bool) -> IdentifyResponse {
    let mut abis = AbisClient::new(channel(server).await).max_decoding_message_size(64 << 20);
    let req = IdentifyRequest {
        probe: Some(identify_request::Probe::ReferenceId(PROBE.into())),
        gallery_reference_ids: vec![],
        max_results: 5,
        target_fpir: 30,
        open_case,
    };
    abis.identify(with_key(req, &keys.office))
        .await
        .expect("identify")
        .into_inner()
}

fn check_case_content(case: &AdjudicationCase) {
    assert_eq!(case.state, CaseState::Open as i32);
    assert_eq!(case.probe_reference_id, PROBE);
    let c = &case.candidates[0];
    assert_eq!(c.reference_id, OTHER);
    let f = &c.fingers[0];
    assert_eq!(f.position, 2);
    let (p, q) = (f.probe.as_ref().unwrap(), f.candidate.as_ref().unwrap());
    assert!(
        p.minutiae.len() >= 12 && q.minutiae.len() >= 12,
        "{} {}",
        p.minutiae.len(),
        q.minutiae.len()
    );
    assert!(f.pairs.len() >= MIN_MATES, "{} mated pairs", f.pairs.len());
    assert!(
        f.score >= case.threshold,
        "{} < {}",
        f.score,
        case.threshold
    );
    for pair in &f.pairs {
        assert!((pair.probe as usize) < p.minutiae.len());
        assert!((pair.candidate as usize) < q.minutiae.len());
    }
}

/// Signs in on the page with `key`; returns the session cookie.
fn sign_in(page: &str, key: &str) -> http::Answer {
    let body = http::form(&[("key", key)]);
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    http::request(page, "POST", "/login", &headers, body.as_bytes())
}

fn cookie_of(answer: &http::Answer) -> String {
    let set = answer.header("set-cookie").expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().unwrap().to_string()
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_string()
}

fn audit_lines(data: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(data.join("audit")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        out.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
    }
    out
}

fn audit_verify(data: &Path) {
    let out = support::abis()
        .args(["audit", "verify"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The FVC2002 DB1_B prints, when the models are installed too (else the test skips, or
/// fails under `ABIS_REQUIRE_DATA=1`).
fn models_and_fvc() -> Option<PathBuf> {
    if !support::models_ready() {
        return None;
    }
    abis_testkit::shared("fingerprint/FVC2002_DB1_B")
}

type Adjudication = AdjudicationClient<Channel>;

async fn adjudication(server: &Server) -> Adjudication {
    AdjudicationClient::new(channel(server).await).max_decoding_message_size(64 << 20)
}

async fn get_case(
    adj: &mut Adjudication,
    key: &str,
    id: &str,
) -> Result<AdjudicationCase, tonic::Status> {
    let req = GetCaseRequest { case_id: id.into() };
    adj.get_case(with_key(req, key))
        .await
        .map(|r| r.into_inner())
}

/// Roles, unknown ids, the case's content and the list, over gRPC.
async fn check_over_grpc(adj: &mut Adjudication, keys: &Keys, case_id: &str) {
    let denied = get_case(adj, &keys.teller, case_id).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let unknown = get_case(adj, &keys.examiner, &"0".repeat(32))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    check_case_content(&get_case(adj, &keys.examiner, case_id).await.unwrap());
    let list = ListCasesRequest {
        state: CaseState::Open as i32,
        page_size: 10,
        page_token: String::new(),
    };
    let listed = adj
        .list_cases(with_key(list, &keys.examiner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.cases.len(), 1);
    assert_eq!(listed.cases[0].case_id, case_id);
}

/// The page: a verify key gets no session; the examiner sees the case and decides once.
fn decide_on_the_page(page: &str, keys: &Keys, case_id: &str) {
    let refused = sign_in(page, &keys.teller);
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("PERMISSION_DENIED"));
    let login = sign_in(page, &keys.examiner);
    assert_eq!(login.status, 303, "{}", login.text());
    let cookie = cookie_of(&login);
    let path = format!("/cases/{case_id}");
    let anonymous = http::request(page, "GET", &path, &[], b"");
    assert_eq!(
        (anonymous.status, anonymous.header("location")),
        (303, Some("/login"))
    );
    let unknown = format!("/cases/{}", "0".repeat(32));
    let missing = http::request(page, "GET", &unknown, &[("Cookie", &cookie)], b"");
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert!(missing.text().contains("NOT_FOUND"));
    let view = http::request(page, "GET", &path, &[("Cookie", &cookie)], b"");
    assert_eq!(view.status, 200);
    let csp = view.header("content-security-policy").expect("CSP");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let html = view.text();
    assert!(html.matches("class=\"mate\"").count() >= MIN_MATES);
    let decide = |csrf: &str, decision: &str| {
        let fields = [
            ("csrf", csrf),
            ("decision", decision),
            ("comment", "same ridge flow"),
        ];
        let headers = [
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        let body = http::form(&fields);
        http::request(
            page,
            "POST",
            &format!("{path}/decide"),
            &headers,
            body.as_bytes(),
        )
    };
    let forged = decide("forged", "duplicate");
    assert_eq!(forged.status, 403, "a POST without the CSRF token");
    let csrf = csrf_of(&html);
    let decided = decide(&csrf, "duplicate");
    assert_eq!(decided.status, 303, "{}", decided.text());
    let again = decide(&csrf, "distinct");
    assert_eq!(again.status, 409, "{}", again.text());
    assert!(
        again.text().contains("duplicate by examiner-1"),
        "{}",
        again.text()
    );
}

/// The case is decided "duplicate" by examiner-1.
async fn check_verdict(adj: &mut Adjudication, keys: &Keys, case_id: &str) -> AdjudicationCase {
    let case = get_case(adj, &keys.examiner, case_id).await.unwrap();
    assert_eq!(case.state, CaseState::Decided as i32);
    let verdict = case.verdict.clone().expect("verdict");
    assert_eq!(
        (verdict.decision(), verdict.examiner.as_str()),
        (CaseDecision::Duplicate, "examiner-1")
    );
    case
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_are_decided_once_audited_and_survive_sigkill() {
    let Some(fvc) = models_and_fvc() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let (server, page) = start(tempfile::tempdir().unwrap(), &keys, "never", false);
    let case_id = enrol_and_open_case(&server, &keys, &fvc, 1, None).await;
    let mut adj = adjudication(&server).await;
    check_over_grpc(&mut adj, &keys, &case_id).await;
    decide_on_the_page(&page, &keys, &case_id);

    // Twice over gRPC: FAILED_PRECONDITION naming the first decision. Then SIGKILL at once.
    let twice = DecideCaseRequest {
        case_id: case_id.clone(),
        decision: CaseDecision::Distinct as i32,
        comment: String::new(),
    };
    let err = adj
        .decide_case(with_key(twice, &keys.examiner))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("duplicate by examiner-1"),
        "{}",
        err.message()
    );
    let data = server.kill_keep_data();

    // Restarted with open_cases = "on_hit": the decision is there, and every hit opens a case.
    let (server, _page) = start(data, &keys, "on_hit", false);
    let case = check_verdict(&mut adjudication(&server).await, &keys, &case_id).await;
    assert_eq!(case.verdict.unwrap().comment, "same ridge flow");
    let unasked = identify(&server, &keys, false).await;
    assert_eq!(
        unasked.case_id.len(),
        32,
        "on_hit opened no case: {unasked:?}"
    );
    assert_ne!(unasked.case_id, case_id);
    // The same from a shell: `abis client cases get` and `cases list`.
    let client = |args: &[&str]| {
        let mut all = vec![
            "client",
            "--addr",
            &server.addr,
            "--api-key",
            &keys.examiner,
        ];
        all.extend_from_slice(args);
        support::abis_json(&all)
    };
    let got = client(&["cases", "get", &case_id]);
    assert_eq!(
        got["verdict"]["decision"], "CASE_DECISION_DUPLICATE",
        "{got}"
    );
    let mated = &got["candidates"][0]["fingers"][0]["mated_minutiae"];
    assert!(mated.as_u64().unwrap() >= MIN_MATES as u64, "{got}");
    let open = client(&["cases", "list", "--state", "open"]);
    assert_eq!(
        open["cases"][0]["case_id"],
        unasked.case_id.as_str(),
        "{open}"
    );
    let data = server.stop_keep_data().1;
    audit_verify(data.path());
    let decisions: Vec<_> = audit_lines(data.path())
        .into_iter()
        .filter(|e| e["rpc"] == "DecideCase")
        .collect();
    assert_eq!(decisions.len(), 3, "{decisions:?}");
    assert_eq!(decisions[0]["caller"], "examiner-1");
    assert_eq!(decisions[0]["code"], "OK");
    assert_eq!(
        decisions[0]["decision"],
        format!("case:{case_id} duplicate")
    );
    assert_eq!(decisions[1]["code"], "FAILED_PRECONDITION");
}

fn sign_in_and_open_the_case(browser: &Browser, page: &str, key: &str, case_id: &str) {
    browser.goto(&format!("http://{page}/login"));
    browser.type_into(&browser.find("#key"), key);
    browser.click(&browser.find("#sign-in"));
    let limit = Duration::from_secs(20);
    browser.wait_for("return document.querySelector('#queue') !== null;", limit);
    browser.click(&browser.find("a.case-link"));
    browser.wait_for("return document.body.dataset.ready === '1';", limit);
    assert!(browser.url().ends_with(&format!("/cases/{case_id}")));
}

/// Both prints of all ten fingers are drawn, with the mated pairs joined.
fn check_drawing(browser: &Browser) {
    let count = |css: &str| {
        let n = browser.script(&format!(
            "return document.querySelectorAll('{css}').length;"
        ));
        n.as_u64().expect("a count")
    };
    let (prints, mates) = (count("svg.prints"), count("line.mate"));
    let probe = count(".probe-print .minutia");
    let candidate = count(".candidate-print .minutia");
    eprintln!("drawn: {prints} fingers, {probe} + {candidate} minutiae, {mates} mated pairs");
    assert_eq!(prints, 10, "one drawing per finger position");
    assert!(probe >= 120 && candidate >= 120);
    assert!(
        mates >= 10 * MIN_MATES as u64 / 2,
        "{mates} mated-pair lines"
    );
    // The lines are laid out (drawn, not only in the DOM).
    let width =
        browser.script("return document.querySelector('line.mate').getBoundingClientRect().width;");
    assert!(width.as_f64().unwrap() > 10.0, "{width}");
    // How long the ten-finger case page took (reported, never asserted: timings decide no test).
    let timing = browser.script(
        "const n = performance.getEntriesByType('navigation')[0]; \
         return [n.responseStart - n.requestStart, n.responseEnd - n.startTime, \
         n.loadEventEnd - n.startTime];",
    );
    eprintln!(
        "ten-finger case page: first byte {} ms after the request, received {} ms, loaded {} ms",
        timing[0], timing[1], timing[2]
    );
}

/// With `[store] keep_images` every print is drawn over its image, and the faces (when
/// enrolled) are shown side by side, decoded by the browser.
fn check_images_in_the_browser(browser: &Browser, faces: bool) {
    let prints = browser.script("return document.querySelectorAll('image.print-image').length;");
    assert_eq!(prints.as_u64(), Some(20), "two print images per finger");
    if faces {
        let shown = browser.script(
            "const f = [...document.querySelectorAll('img.face')]; \
             return [f.length, f.filter(i => i.complete && i.naturalWidth > 0).length];",
        );
        assert_eq!(
            shown,
            serde_json::json!([2, 2]),
            "both faces decoded by the browser"
        );
    }
}

fn screenshot(browser: &Browser, name: &str) {
    let artefacts = support::repo_root().join("target/artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    std::fs::write(artefacts.join(name), browser.screenshot()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_examiner_decides_a_ten_finger_case_in_chromium_with_the_keyboard() {
    let Some(fvc) = models_and_fvc() else {
        return;
    };
    let Some((chromium, chromedriver)) = abis_testkit::chromium::binaries() else {
        return;
    };
    let att = abis_testkit::shared("face/ATT_ORL").filter(|_| support::face_models_ready());
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let (server, page) = start(tempfile::tempdir().unwrap(), &keys, "never", true);
    let case_id = enrol_and_open_case(&server, &keys, &fvc, 10, att.as_deref()).await;
    let browser = Browser::start(&chromium, &chromedriver, 1200, 800);
    sign_in_and_open_the_case(&browser, &page, &keys.examiner, &case_id);
    check_drawing(&browser);
    check_images_in_the_browser(&browser, att.is_some());
    screenshot(&browser, "adjudication-case.png");
    browser.press("d");
    let emptied = "return document.querySelector('#empty-queue') !== null;";
    browser.wait_for(emptied, Duration::from_secs(20));
    screenshot(&browser, "adjudication-queue-after.png");
    check_verdict(&mut adjudication(&server).await, &keys, &case_id).await;
    drop(browser);
    let data = server.stop_keep_data().1;
    audit_verify(data.path());
    let decided = audit_lines(data.path())
        .into_iter()
        .any(|e| e["rpc"] == "DecideCase" && e["caller"] == "examiner-1" && e["code"] == "OK");
    assert!(decided, "no decision in the audit log");
}

/// GETs `path` on the page with `cookie`; with status 200 the PNG it answered, decoded.
fn page_png(page: &str, cookie: &str, path: &str) -> Result<image::DynamicImage, u16> {
    let answer = http::request(page, "GET", path, &[("Cookie", cookie)], b"");
    if answer.status != 200 {
        return Err(answer.status);
    }
    assert_eq!(answer.header("content-type"), Some("image/png"));
    Ok(image::load_from_memory(&answer.body).expect("a PNG"))
}

/// The image URLs of a case page, in page order.
fn image_urls(page: &str, cookie: &str, case_id: &str) -> Vec<String> {
    let view = http::request(
        page,
        "GET",
        &format!("/cases/{case_id}"),
        &[("Cookie", cookie)],
        b"",
    );
    assert_eq!(view.status, 200, "{}", view.text());
    let html = view.text();
    html.match_indices("href=\"/cases/")
        .map(|(at, _)| {
            let start = at + 6;
            let end = start + html[start..].find('"').unwrap();
            html[start..end].to_string()
        })
        .collect()
}

/// `[store] keep_images`: a search with inline images opens a case that keeps them; the page
/// serves the probe's and the candidate's TIFF prints as PNG of the same size; the images
/// survive SIGKILL; deleting the candidate's record deletes its images, and its print is then
/// drawn from minutiae only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_images_are_served_as_png_survive_sigkill_and_go_with_their_record() {
    let Some(fvc) = models_and_fvc() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let (server, page) = start(tempfile::tempdir().unwrap(), &keys, "never", true);
    enrol_and_open_case(&server, &keys, &fvc, 1, None).await;
    // A search with the probe's images inline (a third impression): its case keeps them.
    let mut abis = AbisClient::new(channel(&server).await).max_decoding_message_size(64 << 20);
    let req = IdentifyRequest {
        probe: Some(identify_request::Probe::Samples(
            abis_proto::v1::SampleList {
                samples: samples(&fvc, 1, 3, None),
            },
        )),
        max_results: 5,
        target_fpir: 30,
        open_case: true,
        ..Default::default()
    };
    let found = abis
        .identify(with_key(req, &keys.office))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.candidates.len(), 2, "{found:?}");
    let case_id = found.case_id;
    let cookie = cookie_of(&sign_in(&page, &keys.examiner));
    let urls = image_urls(&page, &cookie, &case_id);
    assert_eq!(
        urls.len(),
        4,
        "probe and candidate print, two candidates: {urls:?}"
    );
    let tiff = image::load_from_memory(&std::fs::read(fvc.join("101_3.tif")).unwrap()).unwrap();
    for url in &urls {
        let png = page_png(&page, &cookie, url).unwrap();
        assert_eq!(
            (png.width(), png.height()),
            (tiff.width(), tiff.height()),
            "{url}"
        );
    }
    let probe_png = page_png(&page, &cookie, &urls[0]).unwrap();
    assert_eq!(
        probe_png.to_luma8().into_raw(),
        tiff.to_luma8().into_raw(),
        "as received"
    );
    let absent = format!("/cases/{case_id}/image/c7/finger/0");
    assert_eq!(page_png(&page, &cookie, &absent).unwrap_err(), 404);

    let data = server.kill_keep_data();
    let (server, page) = start(data, &keys, "never", true);
    let cookie = cookie_of(&sign_in(&page, &keys.examiner));
    assert_eq!(image_urls(&page, &cookie, &case_id), urls, "after SIGKILL");
    let mut abis = AbisClient::new(channel(&server).await);
    let delete = abis_proto::v1::DeleteRequest {
        reference_id: OTHER.into(),
    };
    abis.delete(with_key(delete, &keys.admin))
        .await
        .expect("delete");
    let left = image_urls(&page, &cookie, &case_id);
    assert_eq!(
        left.len(),
        3,
        "the deleted record's print is gone: {left:?}"
    );
    let gone: Vec<&String> = urls.iter().filter(|u| !left.contains(u)).collect();
    assert_eq!(page_png(&page, &cookie, gone[0]).unwrap_err(), 404);
    let files = std::fs::read_dir(server.data_dir().join("images"))
        .unwrap()
        .count();
    assert_eq!(files, 2, "the probe record's and the case's image files");
}
