//! `tom-chaincode`: TOM's chaincode-as-a-service server. Configured from the environment the
//! way Fabric's CCaaS servers are (see `tom_chaincode::config`); stops on SIGTERM or SIGINT.

use std::time::Duration;

use anyhow::Context;

const USAGE: &str = "\
tom-chaincode: TOM's Fabric chaincode, served as a chaincode-as-a-service gRPC server.

Usage: tom-chaincode [--help | --version]

Configuration (environment):
  CHAINCODE_ID                   package id the peers know it by (label:sha256)   required
  CHAINCODE_SERVER_ADDRESS       host:port to listen on, e.g. 0.0.0.0:9999         required
  CHAINCODE_TLS_DISABLED         true: plain gRPC, TLS settings ignored            default false
  CHAINCODE_TLS_CERT             server certificate (PEM file path or PEM)         unset: plain gRPC
  CHAINCODE_TLS_KEY              server private key (PEM file path or PEM)
  CHAINCODE_CLIENT_CA_CERT       CA of peers' client certificates; makes client auth required
  CHAINCODE_SHUTDOWN_GRACE_SECS  time SIGTERM allows in-flight transactions       default 2
  RUST_LOG                       log filter                                       default info
";

fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("--version" | "-V") => {
            println!("tom-chaincode {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Some("--help" | "-h") => {
            print!("{USAGE}");
            return Ok(());
        }
        Some(other) => anyhow::bail!(
            "unexpected argument {other:?}; configuration comes from the environment\n\n{USAGE}"
        ),
    }

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in container logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let config = tom_chaincode::Config::from_env().context("invalid chaincode configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Each transaction runs the (synchronous) contract on a blocking thread. Cap them so a
        // burst of peer requests queues instead of spawning hundreds of OS threads (tokio's
        // default cap is 512, which a container with a low pids limit would not survive).
        .max_blocking_threads(64)
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let listener = tom_chaincode::bind(&config).await?;
        tom_chaincode::serve(config, listener, shutdown_signal()).await
    });
    // Transaction threads still waiting for a vanished peer end as soon as their stream is
    // dropped; do not let one of them hold the process.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result.context("chaincode server failed")
}

/// Resolves on the first SIGTERM (what `docker stop` and Kubernetes send) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
