//! A `redis-server` of a test's own: a free loopback port, a folder of its
//! own, stopped (by pid) when dropped, whatever the test's outcome.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to answer after it was started.
const START_LIMIT: Duration = Duration::from_secs(20);

/// A running `redis-server`, private to one test.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    persistent: bool,
    extra: Vec<String>,
}

impl RedisServer {
    /// A server that keeps nothing on disk.
    pub fn start() -> RedisServer {
        RedisServer::launch(false)
    }

    /// A server that writes every change to its append-only file, so that
    /// a restart keeps the data.
    pub fn start_persistent() -> RedisServer {
        RedisServer::launch(true)
    }

    /// A server that keeps nothing on disk, started with `args` too.
    pub fn start_with(args: &[&str]) -> RedisServer {
        RedisServer::launch_with(false, args.iter().map(|a| (*a).to_owned()).collect())
    }

    fn launch(persistent: bool) -> RedisServer {
        RedisServer::launch_with(persistent, Vec::new())
    }

    fn launch_with(persistent: bool, extra: Vec<String>) -> RedisServer {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sidetask-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a folder for redis-server");
        for _ in 0..10 {
            let port = free_port();
            let mut server = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
                persistent,
                extra: extra.clone(),
            };
            if server.run() {
                return server;
            }
        }
        panic!("redis-server did not start (is it installed? `apt-get install redis-server`)");
    }

    /// Starts the process on this server's port and folder; `false` if it
    /// did not answer (the port was taken meanwhile).
    fn run(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", ""])
            .args(["--logfile", "redis.log"])
            .arg("--unixsocket")
            .arg(self.dir.join("redis.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.args(&self.extra);
        let mut child = cmd.spawn().expect("redis-server runs");
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            // Another test's server may hold the port: only ours counts.
            // And it must have loaded its data: until then it answers
            // most commands with a LOADING error.
            if server_pid(self.port) == Some(child.id()) && info_says(self.port, "loading:0") {
                self.child = Some(child);
                return true;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis+unix://` and the path of the server's Unix socket.
    pub fn unix_url(&self) -> String {
        format!("redis+unix://{}", self.dir.join("redis.sock").display())
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port and folder (a
    /// persistent one comes back with its data, another one empty).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_LIMIT;
        while !self.run() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not come back on port {}",
                self.port
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A plain connection to this server (for a test's or a baseline's own
    /// commands).
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Runs `redis-cli` against this server and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The pid of the server that answers on `port`, if one does.
fn server_pid(port: u16) -> Option<u32> {
    let text = info(port, "server")?;
    let rest = text.split("process_id:").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Whether the server on `port` answers `INFO` with a line `line`.
fn info_says(port: u16, line: &str) -> bool {
    info(port, "everything").is_some_and(|text| text.lines().any(|l| l.trim() == line))
}

/// The server's whole answer to `INFO <section>`, within two seconds.
fn info(port: u16, section: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream
        .write_all(format!("INFO {section}\r\n").as_bytes())
        .ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        // A bulk string: `$<length>\r\n<text>\r\n`.
        let text = String::from_utf8_lossy(&reply);
        if let Some((head, body)) = text.split_once("\r\n")
            && let Some(len) = head.strip_prefix('$').and_then(|l| l.parse::<usize>().ok())
            && body.len() >= len
        {
            return Some(body[..len].to_owned());
        }
    }
    None
}

/// A Redis Cluster of three masters, each a [`RedisServer`] of the test's
/// own, its slots assigned by `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::launch_with(
                    false,
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                    ]
                    .map(String::from)
                    .to_vec(),
                )
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + START_LIMIT;
        while !nodes
            .iter()
            .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "the cluster did not come up");
            thread::sleep(Duration::from_millis(50));
        }
        RedisCluster { nodes }
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}
