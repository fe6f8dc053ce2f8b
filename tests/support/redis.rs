//! A real Redis server for cluster tests, on a free loopback port, without
//! persistence; killed when dropped. `restart` kills it (its data is gone,
//! as after a crash of a store without persistence) and starts it again on
//! the same port.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    /// Extra arguments (a replica's `--replicaof`, a sentinel's config).
    args: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::with_args(Vec::new(), None)
    }

    fn with_args(args: Vec<String>, dir: Option<tempfile::TempDir>) -> Redis {
        let port = super::free_tcp_port();
        let mut redis = Redis {
            port,
            child: None,
            args,
            _dir: dir,
        };
        redis.spawn();
        redis
    }

    /// A replica of the server on `master`.
    pub fn replica_of(master: u16) -> Redis {
        Redis::with_args(
            vec![
                "--replicaof".to_string(),
                "127.0.0.1".to_string(),
                master.to_string(),
            ],
            None,
        )
    }

    /// A Redis Sentinel watching `master` as `name` (quorum 1, a master
    /// that does not answer for a second is failed over).
    pub fn sentinel(master: u16, name: &str) -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {name} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 3000\n\
                 sentinel parallel-syncs {name} 1\n"
            ),
        )
        .expect("sentinel.conf");
        let conf = conf.display().to_string();
        Redis::with_args(vec![conf, "--sentinel".to_string()], Some(dir))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        // A config file (a sentinel's) comes first.
        if let Some(first) = self.args.first().filter(|a| a.ends_with(".conf")) {
            cmd.arg(first);
        }
        let child = cmd
            .args(["--port", &self.port.to_string()])
            .args(self.args.iter().filter(|a| !a.ends_with(".conf")))
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) starts");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < end, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A crash and a restart: the data is lost.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs a redis-cli command against it; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
