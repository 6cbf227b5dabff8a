//! `GET /health`.

use crate::helpers::spawn_app;

#[actix_web::test]
async fn health_reports_uptime_sessions_and_ids() {
    let app = spawn_app().await;
    let health = app.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["broker"], "memory");
    assert!(health["uptime_secs"].is_u64(), "{health}");
    assert_eq!(
        (health["sessions"].as_u64(), health["ids"].as_u64()),
        (Some(0), Some(0))
    );

    let _tab1 = app.ws_registered("63").await;
    let _tab2 = app.ws_registered("63").await;
    let _anonymous = app.ws("").await;

    app.wait_for_counts(3, 1).await;
}
