//! `switchboard dev` in-process (`app::run_dev_counting_into`) on 127.0.0.1 with an
//! embedded store, stopped as SIGTERM stops it: the one start-up the
//! in-process dev tests share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard::app::{DevConfig, run_dev_counting_into};
use switchboard::backend::embedded::EmbeddedStore;
use switchboard::gateway::GatewayConfig;
use switchboard::telemetry::Metrics;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a stop may take (the drain).
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A running `dev`.
pub struct Dev {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it counts (also served on `/metrics`); readable after [`Dev::stop`].
    pub metrics: Arc<Metrics>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), switchboard::Error>>,
}

impl Dev {
    /// `dev` with the gateway configuration `gateway` on `store`, default
    /// worker pipelines.
    pub async fn start(gateway: GatewayConfig, store: EmbeddedStore) -> Dev {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let config = DevConfig {
            gateway,
            pipelines: Default::default(),
        };
        let metrics = Arc::new(Metrics::new());
        let task = tokio::spawn(run_dev_counting_into(
            config,
            store,
            listener,
            metrics.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        Dev {
            addr,
            metrics,
            stop,
            task,
        }
    }

    /// `dev` with the default gateway on a fresh in-memory store.
    pub async fn in_memory() -> Dev {
        Dev::start(
            GatewayConfig::default(),
            EmbeddedStore::in_memory().await.unwrap(),
        )
        .await
    }

    /// The WebSocket URL of the `dev` stage for session `session`.
    pub fn url(&self, session: &str) -> String {
        format!("ws://{}/dev?session={session}", self.addr)
    }

    /// Stops it and waits for a clean exit.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(STOP_DEADLINE, self.task)
            .await
            .expect("dev stopped in time")
            .unwrap()
            .expect("dev exited cleanly");
    }
}
