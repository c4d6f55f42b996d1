//! A real IM server as pushgate's client: Synapse (pinned in scripts/test.sh, which installs
//! it into `tests/peers/synapse-venv`) runs on 127.0.0.1 with its pushers pointed at the
//! gateway's Matrix push gateway API. Alice messages bob in a direct room and bob's phone (the
//! mock provider) gets the notification; a pusher whose pushkey the provider calls gone is
//! deleted by Synapse after the gateway rejects it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::client::Api;
use support::eventually;
use support::gateway::{config, GatewayProcess};

const WAIT: Duration = Duration::from_secs(60);
const SHARED_SECRET: &str = "pushgate-test-registration-secret";

fn venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/synapse-venv");
    assert!(
        venv.join("bin/python").exists(),
        "Synapse is not installed: run scripts/test.sh (it makes tests/peers/synapse-venv)"
    );
    venv
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Synapse homeserver (`localhost`) on 127.0.0.1, stopped when dropped.
struct Synapse {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Synapse {
    async fn start() -> Synapse {
        let venv = venv();
        let dir = tempfile::tempdir().expect("tempdir");
        let python = venv.join("bin/python");
        let status = Command::new(&python)
            .current_dir(dir.path())
            .args([
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                "localhost",
                "-c",
                "homeserver.yaml",
                "--generate-config",
                "--report-stats=no",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("run synapse --generate-config");
        assert!(status.success(), "synapse --generate-config failed");
        let port = free_port();
        let d = dir.path().display();
        // The minimal config of shared/specs/matrix, on a free port, with the generated key.
        let yaml = format!(
            "server_name: \"localhost\"\npid_file: {d}/homeserver.pid\nlisteners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n    tls: false\n    x_forwarded: false\n    resources:\n      - names: [client]\n        compress: false\ndatabase:\n  name: sqlite3\n  args:\n    database: {d}/homeserver.db\nlog_config: \"{d}/localhost.log.config\"\nmedia_store_path: {d}/media_store\nsigning_key_path: \"{d}/localhost.signing.key\"\nregistration_shared_secret: \"{SHARED_SECRET}\"\nmacaroon_secret_key: \"pushgate-test-macaroon\"\nform_secret: \"pushgate-test-form\"\nreport_stats: false\ntrusted_key_servers: []\nsuppress_key_server_warning: true\nip_range_whitelist: ['127.0.0.1']\nenable_metrics: false\nrc_message: {{per_second: 1000, burst_count: 1000}}\nrc_registration: {{per_second: 1000, burst_count: 1000}}\nrc_login:\n  address: {{per_second: 1000, burst_count: 1000}}\n  account: {{per_second: 1000, burst_count: 1000}}\n"
        );
        std::fs::write(dir.path().join("homeserver.yaml"), yaml).expect("write config");
        let log = std::fs::File::create(dir.path().join("synapse.out")).expect("log file");
        let child = Command::new(&python)
            .current_dir(dir.path())
            .args(["-m", "synapse.app.homeserver", "-c", "homeserver.yaml"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start synapse");
        let url = format!("http://127.0.0.1:{port}");
        let synapse = Synapse {
            child,
            url,
            _dir: dir,
        };
        let api = Api::new(&synapse.url, None);
        eventually(WAIT, "Synapse to answer", || {
            let api = api.clone();
            async move {
                let r = api
                    .try_raw(Method::GET, "/_matrix/client/versions", &[], Vec::new())
                    .await;
                r.ok().filter(|r| r.status == StatusCode::OK).map(|_| ())
            }
        })
        .await;
        synapse
    }

    /// Registers `user` and logs in; their client API.
    async fn user(&self, user: &str) -> Api {
        let password = format!("pass-{user}");
        let status = Command::new(venv().join("bin/register_new_matrix_user"))
            .args([
                "-u",
                user,
                "-p",
                &password,
                "--no-admin",
                "-k",
                SHARED_SECRET,
                &self.url,
            ])
            .stdout(Stdio::null())
            .status()
            .expect("run register_new_matrix_user");
        assert!(status.success(), "registering {user} failed");
        let login = Api::new(&self.url, None)
            .post(
                "/_matrix/client/v3/login",
                &json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}),
            )
            .await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text);
        let token = login.json["access_token"]
            .as_str()
            .expect("token")
            .to_string();
        Api::new(&self.url, Some(&token))
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn room_path(room: &str) -> String {
    room.replace('!', "%21").replace(':', "%3A")
}

async fn set_pusher(bob: &Api, pushkey: &str, gateway: &str) {
    let r = bob
        .post(
            "/_matrix/client/v3/pushers/set",
            &json!({"kind": "http", "app_id": "com.example.pushgw", "pushkey": pushkey,
                "app_display_name": "pushgate test", "device_display_name": pushkey, "lang": "en",
                "append": true,
                "data": {"url": format!("{gateway}/_matrix/push/v1/notify")}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

async fn say(alice: &Api, room: &str, n: u32, text: &str) {
    let r = alice
        .raw(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/txn-{n}",
                room_path(room)
            ),
            &[("content-type", "application/json")],
            json!({"msgtype": "m.text", "body": text})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

async fn pushkeys(bob: &Api) -> Vec<String> {
    let r = bob.get("/_matrix/client/v3/pushers").await;
    r.json["pushers"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|p| p["pushkey"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_pushes_through_pushgate_and_drops_a_rejected_pusher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let matrix =
        "[[matrix_apps]]\napp_id = \"com.example.pushgw\"\napp = \"demo\"\nprovider = \"mock\"\n";
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", matrix));
    let synapse = Synapse::start().await;
    let alice = synapse.user("alice").await;
    let bob = synapse.user("bob").await;
    set_pusher(&bob, "cid-bob-1", &gw.url).await;

    let room = alice
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"is_direct": true, "preset": "trusted_private_chat", "invite": ["@bob:localhost"]}),
        )
        .await;
    assert_eq!(room.status, StatusCode::OK, "{}", room.text);
    let room = room.json["room_id"].as_str().expect("room id").to_string();
    let joined = bob
        .post(
            &format!("/_matrix/client/v3/join/{}", room_path(&room)),
            &json!({}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.text);
    say(&alice, &room, 1, "hello bob, this is alice").await;

    let pushed = eventually(WAIT, "alice's message on bob's phone", || {
        let api = gw.api();
        async move {
            api.inbox("mock", "cid-bob-1")
                .await
                .into_iter()
                .find(|m| m["payload"]["content"]["body"] == "hello bob, this is alice")
        }
    })
    .await;
    let payload: &Value = &pushed["payload"];
    assert_eq!(payload["sender"], "@alice:localhost");
    assert_eq!(payload["room_id"], room.as_str());
    assert_eq!(payload["type"], "m.room.message");

    // A pusher whose pushkey the provider calls gone: the gateway rejects it, Synapse drops it.
    set_pusher(&bob, "gone-bob-2", &gw.url).await;
    assert_eq!(pushkeys(&bob).await.len(), 2);
    say(&alice, &room, 2, "are you there?").await;
    eventually(WAIT, "Synapse to delete the rejected pusher", || {
        let bob = bob.clone();
        async move { (pushkeys(&bob).await == ["cid-bob-1"]).then_some(()) }
    })
    .await;
    eventually(WAIT, "the second message on bob's phone", || {
        let api = gw.api();
        async move {
            api.inbox("mock", "cid-bob-1")
                .await
                .into_iter()
                .find(|m| m["payload"]["content"]["body"] == "are you there?")
        }
    })
    .await;
}
