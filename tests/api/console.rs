//! `GET /` and `/static/`: the console page works offline.

use actix_web::http::StatusCode;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn the_console_page_loads_its_script_from_herald_itself() {
    let app = spawn_app().await;
    let mut resp = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let csp = resp
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let page = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    assert!(page.contains("Console client"));

    // Every script and stylesheet is local, and each one is served.
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attr) {
            let rest = &page[at + attr.len()..];
            assets.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    assert!(
        assets.contains(&"/static/herald.js".to_owned()),
        "{assets:?}"
    );
    for asset in assets.into_iter().filter(|a| !a.starts_with("data:")) {
        assert!(asset.starts_with("/static/"), "external asset {asset}");
        let mut resp = app.http.get(app.url(&asset)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        let body = resp.body().await.unwrap();
        assert!(!body.is_empty(), "{asset} is empty");
    }
}

#[actix_web::test]
async fn the_client_script_is_served() {
    let app = spawn_app().await;
    let mut resp = app
        .http
        .get(app.url("/static/herald.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.body().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("class HeraldClient"));
}
