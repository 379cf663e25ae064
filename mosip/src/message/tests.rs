use super::*;

fn parse(s: &str) -> Result<Request, RequestError> {
    Request::parse(s.as_bytes())
}

#[test]
fn an_insert_as_mosip_1_2_sends_it() {
    let r = parse(
        r#"{"id":"mosip.abis.insert","version":"1.1","requestId":"r-1",
            "requesttime":"2020-03-29T07:01:24.692Z","referenceId":"ref-1",
            "referenceURL":"https://datashare/ref-1"}"#,
    )
    .unwrap();
    assert_eq!(r.operation, Operation::Insert);
    assert_eq!(r.request_id, "r-1");
    assert_eq!(r.version.as_deref(), Some("1.1"));
    assert_eq!(r.reference_id.as_deref(), Some("ref-1"));
    assert_eq!(r.reference_url.as_deref(), Some("https://datashare/ref-1"));
}

#[test]
fn an_identify_with_the_spec_spellings_numbers_and_nulls() {
    let r = parse(
        r#"{"id":"mosip.abis.identify","ver":1.1,"requestId":"r-2","requesttime":null,
            "referenceId":"","referenceUrl":"http://x/probe",
            "flags":{"maxResults":10,"targetFPIR":"30","flag1":"value1","flag2":null},
            "gallery":{"referenceIds":[{"referenceId":"a"},{"referenceId":"b"}]}}"#,
    )
    .unwrap();
    assert_eq!(r.operation, Operation::Identify);
    assert_eq!(r.version.as_deref(), Some("1.1"));
    assert_eq!(r.reference_id, None, "an empty referenceId is absent");
    assert_eq!(r.reference_url.as_deref(), Some("http://x/probe"));
    assert_eq!(r.flags.max_results, Some(10));
    assert_eq!(r.flags.target_fpir, Some(30));
    assert_eq!(
        r.flags.other.get("flag1").map(String::as_str),
        Some("value1")
    );
    assert!(!r.flags.other.contains_key("flag2"));
    assert_eq!(r.gallery, Some(vec!["a".to_string(), "b".to_string()]));
}

#[test]
fn mosip_1_2_identifies_by_reference_id_with_a_null_gallery() {
    let r = parse(
        r#"{"id":"mosip.abis.identify","version":"1.1","requestId":"r-3","requesttime":"t",
            "referenceId":"ref-9","referenceUrl":"","gallery":null,"flags":null}"#,
    )
    .unwrap();
    assert_eq!(r.reference_id.as_deref(), Some("ref-9"));
    assert_eq!(r.reference_url, None);
    assert_eq!(r.gallery, None);
    assert_eq!(r.flags, Flags::default());
}

#[test]
fn requests_that_cannot_be_served_say_how_to_answer() {
    let e = parse("not json").unwrap_err();
    assert!(matches!(e, RequestError::NotJson(_)));
    assert_eq!(
        e.answer().outcome,
        Outcome::Failure(FailureReason::InvalidRequest)
    );

    let e = parse(r#"{"id":"mosip.abis.ping"}"#).unwrap_err();
    assert_eq!(
        e,
        RequestError::MissingRequestId {
            id: Some("mosip.abis.ping".into())
        }
    );
    assert_eq!(e.answer().id, "mosip.abis.ping");

    let e = parse(r#"{"id":"mosip.abis.upsert","requestId":"r-4"}"#).unwrap_err();
    assert!(matches!(e, RequestError::UnknownOperation { .. }));
    let answer = e.answer();
    assert_eq!(
        (answer.id.as_str(), answer.request_id.as_str()),
        ("mosip.abis.upsert", "r-4")
    );

    let e =
        parse(r#"{"id":"mosip.abis.insert","requestId":"r-5","referenceURL":"u"}"#).unwrap_err();
    assert_eq!(e.failure_reason(), FailureReason::MissingReferenceId);
    let e = parse(r#"{"id":"mosip.abis.identify","requestId":"r-6"}"#).unwrap_err();
    assert_eq!(e.failure_reason(), FailureReason::MissingReferenceId);

    let e = parse(r#"{"id":"mosip.abis.identify","requestId":"r-7","referenceId":"x","flags":{"maxResults":"many"}}"#)
        .unwrap_err();
    assert!(
        matches!(e, RequestError::InvalidField { field: "flags", .. }),
        "{e:?}"
    );
    assert_eq!(e.answer().request_id, "r-7");
}

#[test]
fn answers_are_written_with_string_fields() {
    let r = Response::failed(
        "mosip.abis.insert",
        "r-1",
        FailureReason::UnableToFetchBiometrics,
    )
    .at("2020-03-29T07:01:24.692Z");
    let v: Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["returnValue"], "2");
    assert_eq!(v["failureReason"], "7");
    assert_eq!(v["requestId"], "r-1");
    assert_eq!(v["responsetime"], "2020-03-29T07:01:24.692Z");

    let r = Response::success("mosip.abis.pendingJobs", "r-2", Answer::JobsCount(12));
    let v: Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(
        (v["returnValue"].as_str(), v["jobscount"].as_str()),
        (Some("1"), Some("12"))
    );

    let candidate = Candidate {
        reference_id: "ref-1".into(),
        analytics: [("internalScore".to_string(), "81.5".to_string())].into(),
        modalities: vec![ModalityAnalytics {
            biometric_type: "FIR".into(),
            analytics: [("confidence".to_string(), "90".to_string())].into(),
        }],
    };
    let r = Response::success(
        "mosip.abis.identify",
        "r-3",
        Answer::Candidates(vec![candidate]),
    );
    let v: Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["candidateList"]["count"], "1");
    assert_eq!(
        v["candidateList"]["candidates"][0]["modalities"][0]["biometricType"],
        "FIR"
    );
    assert_eq!(Response::parse(r.to_json().as_bytes()).unwrap(), r);
}

#[test]
fn written_requests_read_back_the_same() {
    let r = Request {
        operation: Operation::Identify,
        request_id: "r-9".into(),
        version: Some("1.1".into()),
        request_time: Some("t".into()),
        reference_id: Some("ref".into()),
        reference_url: None,
        gallery: Some(vec!["g1".into()]),
        flags: Flags {
            max_results: Some(5),
            target_fpir: Some(40),
            other: BTreeMap::new(),
        },
    };
    let json = r.to_json();
    assert!(json.contains("\"referenceUrl\":null"), "{json}");
    assert!(json.contains("\"maxResults\":\"5\""), "{json}");
    assert_eq!(Request::parse(json.as_bytes()).unwrap(), r);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_give_a_request_or_a_typed_error(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Request::parse(&body);
            let _ = Response::parse(&body);
        }

        #[test]
        fn any_json_object_gives_a_request_or_a_typed_error(
            id in prop_oneof![Just("mosip.abis.insert".to_string()), Just("mosip.abis.identify".to_string()), ".{0,12}"],
            rid in proptest::option::of(".{0,8}"),
            rf in proptest::option::of(".{0,8}"),
            max in proptest::option::of(any::<i64>()),
        ) {
            let v = serde_json::json!({"id": id, "requestId": rid, "referenceId": rf,
                "referenceUrl": "u", "flags": {"maxResults": max}});
            match Request::parse(v.to_string().as_bytes()) {
                Ok(r) => prop_assert_eq!(Some(r.request_id), rid.map(|s| s.trim().to_string())),
                Err(e) => { let _ = e.answer().to_json(); }
            }
        }
    }
}
