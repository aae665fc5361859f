//! The console page of `switchboard dev` in headless Chromium, checked
//! through the DOM: the connection count goes up as clients join, a dead
//! letter shows with its body, a script-looking payload is shown as text
//! (no element made of it), and the replay button empties the DLQ and
//! delivers the message. A screenshot is kept under the temp directory.
#![cfg(feature = "browser-tests")]

mod support;

use std::time::Duration;

use serde_json::json;
use support::cdp::Browser;
use support::console::Dev;
use support::ws::Member;

const DEADLINE: Duration = Duration::from_secs(20);
const XSS: &str = "<img src=x onerror=alert(1)>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_page_shows_connections_and_dead_letters_and_replays() {
    let dev = Dev::start().await;
    let mut browser = Browser::launch().await;
    let page = browser.open(&dev.url("/@console/")).await;
    browser.resize(&page, 1400, 1100).await;
    browser
        .wait_for(
            &page,
            "document.getElementById('status')?.dataset.state === 'live' \
             && document.getElementById('conn-total').textContent === '0'",
            DEADLINE,
            "the console is live with no connection",
        )
        .await;

    // Clients join: the count goes up, the rows appear.
    let room = support::unique("room");
    let mut alice = Member::join(&dev.ws_url(&room)).await;
    let bob = Member::join(&dev.ws_url(&room)).await;
    browser
        .wait_for(
            &page,
            "document.getElementById('conn-total').textContent === '2' \
             && document.querySelectorAll('#connections tbody tr').length === 2",
            DEADLINE,
            "two connections shown",
        )
        .await;
    alice.say(XSS, json!({})).await;
    bob.inbox.wait_text(XSS, DEADLINE).await;

    // A dead letter whose payload looks like markup.
    let envelope = json!({
        "v": 1, "id": "xss-1", "action": "sendMessage", "sessionId": room,
        "sender": { "connectionId": "gone", "userId": "mallory" },
        "receivedAt": switchboard::sync::now_ms(),
        "payload": { "text": XSS },
    })
    .to_string();
    dev.dead_letter(&room, &envelope, "xss-dedup").await;
    browser
        .wait_for(
            &page,
            "document.getElementById('dlq-count').textContent === '1' \
             && document.querySelector('#dead-letters tbody tr td.body')?.textContent.includes('<img src=x onerror=alert(1)>')",
            DEADLINE,
            "the dead letter shown with its body as text",
        )
        .await;
    // Shown as text everywhere: no element was made of it.
    assert_eq!(
        browser
            .eval(&page, "document.querySelectorAll('img').length")
            .await,
        json!(0)
    );
    // The session's history shows the stored message as text too.
    browser
        .eval(
            &page,
            &format!(
                "document.querySelector('#sessions tbody tr[data-session=\"{room}\"]').click(); true"
            ),
        )
        .await;
    browser
        .wait_for(
            &page,
            "document.getElementById('history-list').textContent.includes('<img src=x onerror=alert(1)>') \
             && document.querySelectorAll('img').length === 0",
            DEADLINE,
            "the history shows the payload as text",
        )
        .await;

    // Plots are drawn once samples exist.
    browser
        .wait_for(
            &page,
            "(() => { const c = document.getElementById('plot-messages-in'); \
               const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
               for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; })()",
            DEADLINE,
            "the messages-in plot drawn",
        )
        .await;

    let dir = std::env::temp_dir().join(support::unique("switchboard-console"));
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("console.png");
    browser.screenshot(&page, &shot).await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
    println!("console screenshot: {}", shot.display());

    // The replay button empties the DLQ; the message is delivered.
    browser
        .eval(
            &page,
            "document.querySelector('#dead-letters button.replay').click(); true",
        )
        .await;
    browser
        .wait_for(
            &page,
            "document.getElementById('dlq-count').textContent === '0' \
             && document.querySelectorAll('#dead-letters tbody tr').length === 0",
            DEADLINE,
            "the DLQ empty after replay",
        )
        .await;
    support::eventually(DEADLINE, "the replayed message delivered", || async {
        (bob.inbox.texts().iter().filter(|t| *t == XSS).count() == 2).then_some(())
    })
    .await;

    browser.close().await;
    dev.stop().await;
}
