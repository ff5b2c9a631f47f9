//! Graceful shutdown of the long-running roles.

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what service managers and orchestrators send).
pub async fn signal() {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down after in-flight requests");
}
