//! `orders serve`: open the storage, bind both listeners, serve until SIGINT/SIGTERM, then
//! drain (bounded by `--drain-timeout`), flush the writer, stop the pools, exit 0.

use std::time::Duration;

use crate::admin::Admin;
use crate::config::ServeConfig;
use crate::confirm::Confirmations;
use crate::state::AppState;
use crate::{app, net, storage};

/// How long the writer and the pools get to finish after the listeners drained.
const FLUSH_GRACE: Duration = Duration::from_secs(5);

pub(crate) fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("orders-worker")
        .build()?;
    rt.block_on(serve(cfg))?;
    // Connections still open past the drain timeout are dropped here.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let storage = storage::open(&cfg.database).await?;
    let confirmations = match &cfg.redis {
        Some(redis) => Some(Confirmations::connect(redis, storage.clone()).await?),
        None => None,
    };
    let state = AppState::new(&cfg, storage.clone(), confirmations.clone())?;
    let admission = app::admission(&cfg)?;
    let admin = Admin::new(state.clone(), admission.clone())?;
    let service = app::build(
        &cfg,
        state.0.metrics.clone(),
        admission,
        app::router(state.clone()),
    );

    let admin_listener = net::bind(cfg.admin_addr, "admin on").await?;
    let public_listener = net::bind(cfg.addr, "listening on").await?;

    let limits = public_limits(&cfg);
    let admin_limits = net::ConnLimits {
        header_read: cfg.header_timeout,
        // A CPU profile holds its request for up to a minute.
        idle: Duration::from_secs(120),
    };
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(net::serve(
        admin_listener,
        admin.clone().router(),
        admin_limits,
        async {
            let _ = admin_stopped.await;
        },
        Duration::from_millis(100),
    ));

    let drained = net::serve(
        public_listener,
        service,
        limits,
        signal(),
        cfg.drain_timeout,
    )
    .await;
    eprintln!(
        "orders: shutting down ({})",
        if drained {
            "drained"
        } else {
            "drain timeout passed"
        }
    );
    state.0.writer.shutdown(FLUSH_GRACE).await;
    // After the writer: every order it committed has had its confirmation sent.
    if let Some(c) = &confirmations {
        c.shutdown(FLUSH_GRACE).await;
    }
    let store = storage.clone();
    tokio::task::spawn_blocking(move || store.shutdown(FLUSH_GRACE)).await?;
    admin.shutdown();
    let _ = stop_admin.send(());
    let _ = admin_task.await;
    eprintln!("orders: stopped");
    Ok(())
}

/// How the public listener treats its connections.
pub(crate) fn public_limits(cfg: &ServeConfig) -> net::ConnLimits {
    // A connection may sit inside a request for the whole request timeout; the idle timeout
    // is for connections that do nothing at all, so it must be longer than that.
    net::ConnLimits {
        header_read: cfg.header_timeout,
        idle: cfg.header_timeout + cfg.request_timeout,
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
