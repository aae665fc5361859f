//! The demo page of `switchboard dev` in headless Chromium: two pages in one
//! session exchange a message, a third joining later gets it as history, and
//! a page of another session sees nothing; members online and join/leave; a
//! page that loses its connection recovers what it missed with `resume` and
//! says so. Checked through the DOM.
#![cfg(feature = "browser-tests")]

mod support;

use std::time::Duration;

use support::cdp::{Browser, Page};
use support::dev::Dev;
use switchboard::backend::embedded::EmbeddedStore;
use switchboard::gateway::GatewayConfig;

const DEADLINE: Duration = Duration::from_secs(20);

fn texts(page_list: &str) -> String {
    format!("Array.from(document.querySelectorAll('{page_list}')).map(e => e.textContent)")
}

async fn open_connected(browser: &mut Browser, base: &str, session: &str, name: &str) -> Page {
    let page = browser
        .open(&format!("{base}/?session={session}&name={name}&autojoin=1"))
        .await;
    browser
        .wait_for(
            &page,
            "document.getElementById('status')?.dataset.state === 'open'",
            DEADLINE,
            &format!("{name}'s page connected"),
        )
        .await;
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_in_one_session_exchange_a_message_through_the_dom() {
    let gateway = GatewayConfig {
        // As `switchboard dev` runs by default.
        presence_events: true,
        ..GatewayConfig::default()
    };
    let dev = Dev::start(gateway, EmbeddedStore::in_memory().await.unwrap()).await;
    let base = format!("http://{}", dev.addr);

    let mut browser = Browser::launch().await;
    let alice = open_connected(&mut browser, &base, "room1", "alice").await;
    let bob = open_connected(&mut browser, &base, "room1", "bob").await;
    let carol = open_connected(&mut browser, &base, "room2", "carol").await;

    browser
        .eval(
            &alice,
            "document.getElementById('text').value = 'hello from alice'; \
             document.getElementById('compose').requestSubmit(); true",
        )
        .await;
    let has = |who: &str| {
        format!(
            "{}.some(t => t === 'hello from alice') && {}.includes('{who}')",
            texts("#messages li.message .text"),
            texts("#messages li.message .who")
        )
    };
    browser
        .wait_for(&bob, &has("alice"), DEADLINE, "bob sees alice's message")
        .await;
    browser
        .wait_for(
            &alice,
            &has("alice"),
            DEADLINE,
            "alice sees her own message",
        )
        .await;

    // Bob answers; Alice sees it after hers, in order.
    browser
        .eval(
            &bob,
            "document.getElementById('text').value = 'hi alice'; \
             document.getElementById('compose').requestSubmit(); true",
        )
        .await;
    let order = format!(
        "JSON.stringify({}) === JSON.stringify(['hello from alice', 'hi alice'])",
        texts("#messages li.message .text")
    );
    browser
        .wait_for(&alice, &order, DEADLINE, "alice sees both, in order")
        .await;

    // Dave joins later: both arrive as history.
    let dave = open_connected(&mut browser, &base, "room1", "dave").await;
    let history = format!(
        "JSON.stringify({}) === JSON.stringify(['hello from alice', 'hi alice'])",
        texts("#messages li.message.history .text")
    );
    browser
        .wait_for(&dave, &history, DEADLINE, "dave gets the history on join")
        .await;

    // Carol, in another session, saw nothing of it.
    let carol_texts = browser
        .eval(&carol, &texts("#messages li.message .text"))
        .await;
    assert_eq!(carol_texts, serde_json::json!([]));

    // Members online: alice lists bob, dave and herself, and saw bob and dave join.
    browser
        .wait_for(
            &alice,
            "document.getElementById('member-count').textContent === '3' && \
             document.querySelectorAll('#messages li.notice.join').length === 2",
            DEADLINE,
            "alice lists 3 members and saw bob and dave join",
        )
        .await;

    // Bob's connection drops (the page's own close, reconnect held back);
    // meanwhile alice sends 12 messages; bob reconnects and resumes them.
    browser
        .eval(&bob, "wanted = false; socket.close(); true")
        .await;
    browser
        .wait_for(
            &alice,
            "document.querySelectorAll('#messages li.notice.leave').length === 1 && \
             document.getElementById('member-count').textContent === '2'",
            DEADLINE,
            "alice sees bob leave",
        )
        .await;
    for i in 0..12 {
        browser
            .eval(
                &alice,
                &format!(
                    "document.getElementById('text').value = 'missed {i}'; \
                     document.getElementById('compose').requestSubmit(); true"
                ),
            )
            .await;
    }
    browser
        .wait_for(
            &alice,
            &format!(
                "{}.includes('missed 11')",
                texts("#messages li.message .text")
            ),
            DEADLINE,
            "alice's 12 messages are through",
        )
        .await;
    browser.eval(&bob, "wanted = true; connect(); true").await;
    browser
        .wait_for(
            &bob,
            "document.getElementById('notice').textContent === \
             'reconnected — 12 missed messages recovered'",
            DEADLINE,
            "bob's page says what it recovered",
        )
        .await;
    let want: Vec<String> = (0..12).map(|i| format!("missed {i}")).collect();
    let got = browser
        .eval(&bob, &texts("#messages li.message.resumed .text"))
        .await;
    assert_eq!(got, serde_json::json!(want), "recovered in order");
    let all = browser
        .eval(&bob, &texts("#messages li.message .text"))
        .await;
    assert_eq!(all.as_array().unwrap().len(), 14, "no duplicate: {all}");

    browser.close().await;
    dev.stop().await;
}
