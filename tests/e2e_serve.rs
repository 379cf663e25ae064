//! End-to-end: the real `abis serve` process, spoken to with real tonic clients.

mod support;

use abis_proto::v1::abis_client::AbisClient;
use abis_proto::v1::{sample, ExtractRequest, Modality, Sample, TemplateFormat};
use support::Server;
use tonic::Code;

fn finger(image: Vec<u8>, position: u32) -> Sample {
    Sample {
        modality: Modality::Finger as i32,
        finger_position: position,
        ppi: 0.0,
        data: Some(sample::Data::Image(image)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_health_reflection_and_extract_then_shuts_down_cleanly() {
    if !support::models_ready() {
        return;
    }
    let server = Server::start();
    let channel = tonic::transport::Endpoint::from_shared(server.addr.clone())
        .unwrap()
        .connect()
        .await
        .expect("connect");

    // The service turns SERVING once its gallery is prepared for matching (empty here: soon).
    for service in ["", "abis.v1.Abis"] {
        support::wait_serving(&server, service, std::time::Duration::from_secs(60)).await;
    }

    let services = list_services(channel.clone()).await;
    assert!(
        services.contains(&"abis.v1.Abis".to_string()),
        "{services:?}"
    );
    assert!(
        services.contains(&"grpc.health.v1.Health".to_string()),
        "{services:?}"
    );
    // Older tools (and Python's grpcio-reflection client) ask v1alpha.
    let services = list_services_v1alpha(channel.clone()).await;
    assert!(
        services.contains(&"abis.v1.Abis".to_string()),
        "{services:?}"
    );

    let mut client = AbisClient::new(channel);
    let image = std::fs::read(support::afis_sample("p1_1.png")).expect("afis sample");
    let resp = client
        .extract(ExtractRequest {
            face_choice: 0,
            samples: vec![finger(image.clone(), 2)],
            format: TemplateFormat::Iso1979422005 as i32,
        })
        .await
        .expect("extract")
        .into_inner();
    let r = &resp.results[0];
    assert_eq!(r.finger_position, 2);
    assert!(r.minutiae >= 20, "{} minutiae", r.minutiae);
    let t = abis_engine::template::decode_iso(&r.template).expect("ISO template decodes");
    assert_eq!(t.minutiae.len() as u32, r.minutiae);
    assert_eq!(t.position.code(), 2);
    assert!(r.finger_quality.as_ref().expect("quality").score > 30);

    // Bad requests: each is INVALID_ARGUMENT naming the field, and the server keeps serving.
    let cases: Vec<(ExtractRequest, &str)> = vec![
        (
            ExtractRequest {
                face_choice: 0,
                samples: vec![],
                format: 0,
            },
            "samples",
        ),
        (
            ExtractRequest {
                face_choice: 0,
                samples: vec![finger(b"not an image".to_vec(), 1)],
                format: 0,
            },
            "samples[0].image",
        ),
        (
            ExtractRequest {
                face_choice: 0,
                samples: vec![finger(image[..200].to_vec(), 1)],
                format: 0,
            },
            "samples[0].image",
        ),
        (
            ExtractRequest {
                face_choice: 0,
                samples: vec![finger(image.clone(), 11)],
                format: 0,
            },
            "samples[0].finger_position",
        ),
        (
            ExtractRequest {
                face_choice: 0,
                samples: vec![finger(image.clone(), 1)],
                format: 99,
            },
            "format",
        ),
        (
            ExtractRequest {
                face_choice: 0,
                samples: vec![Sample {
                    modality: 0,
                    finger_position: 1,
                    ppi: 0.0,
                    data: Some(sample::Data::Image(image.clone())),
                }],
                format: 0,
            },
            "samples[0].modality",
        ),
        (
            ExtractRequest {
                face_choice: 0,
                samples: vec![Sample {
                    ppi: -3.0,
                    ..finger(image.clone(), 1)
                }],
                format: 0,
            },
            "samples[0].ppi",
        ),
    ];
    for (req, field) in cases {
        let err = client.extract(req).await.expect_err("must be refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }

    let status = server.stop();
    assert!(
        status.success(),
        "server exit status after SIGTERM: {status:?}"
    );
}

async fn list_services(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    let resp = stream
        .message()
        .await
        .expect("reflection reply")
        .expect("one reply");
    match resp.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection reply {other:?}"),
    }
}

async fn list_services_v1alpha(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;

    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let resp = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("v1alpha reflection")
        .into_inner()
        .message()
        .await
        .expect("v1alpha reflection reply")
        .expect("one reply");
    match resp.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected v1alpha reflection reply {other:?}"),
    }
}

/// `abis client` takes the address as grpcurl users type it (`HOST:PORT`) as well as a URL, and
/// says clearly when nothing listens there.
#[test]
fn client_accepts_host_and_port_without_a_scheme() {
    if !support::models_ready() {
        return;
    }
    let server = Server::start();
    let bare = server.addr.trim_start_matches("http://").to_string();
    for addr in [bare.as_str(), server.addr.as_str()] {
        let out = support::abis()
            .args(["client", "--addr", addr, "count"])
            .output()
            .expect("run abis client");
        assert!(
            out.status.success(),
            "--addr {addr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(v["count"], 0, "--addr {addr}");
    }
    drop(server);
    let out = support::abis()
        .args(["client", "--addr", &bare, "count"])
        .output()
        .expect("run abis client");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to"), "{err}");
}
