//! The SCEP endpoints of a running broker, over real HTTPS and plain HTTP: GetCACaps, and
//! GetCACert naming the RA made on first start in the data directory and reused on restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use postern_e2e::{Broker, pem_der_blocks};

async fn get(client: &reqwest::Client, url: &str) -> (u16, String, Vec<u8>) {
    let r = client.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn scep_endpoints_on_both_listeners_with_a_persistent_ra() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path()).unwrap();
    let client = broker.client().unwrap();
    let ra_pem = std::fs::read_to_string(dir.path().join("ca/scep-ra.pem")).unwrap();
    let ra = pem_der_blocks(&ra_pem).remove(0);
    rt.block_on(async {
        for base in [&broker.https, &broker.http] {
            let (status, ct, body) = get(
                &client,
                &format!("{base}/scep/scep/pkiclient.exe?operation=GetCACaps"),
            )
            .await;
            assert_eq!(status, 200);
            assert!(ct.starts_with("text/plain"));
            assert!(
                String::from_utf8(body)
                    .unwrap()
                    .contains("POSTPKIOperation\n")
            );
            let (status, ct, body) =
                get(&client, &format!("{base}/scep/scep?operation=GetCACert")).await;
            assert_eq!(status, 200);
            assert_eq!(ct, "application/x-x509-ca-ra-cert");
            assert!(contains(&body, &ra));
            let (status, _, _) =
                get(&client, &format!("{base}/scep/nobody?operation=GetCACert")).await;
            assert_eq!(status, 404);
        }
    });
    broker.stop();
    let broker = Broker::start(dir.path()).unwrap();
    let again = std::fs::read_to_string(dir.path().join("ca/scep-ra.pem")).unwrap();
    assert_eq!(again, ra_pem);
    let (_, _, body) = rt.block_on(get(
        &broker.client().unwrap(),
        &format!("{}/scep/scep?operation=GetCACert", broker.http),
    ));
    assert!(contains(&body, &ra));
    broker.stop();
}
