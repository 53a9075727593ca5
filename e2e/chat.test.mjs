// Browser end-to-end tests of socktalk's web chat: the real binary serves the page, headless
// Chromium (Debian's, driven by playwright-core) uses it as a person would, and a raw TCP
// client (an `nc` stand-in) talks in the same rooms.
//
//   node --test e2e/        (SOCKTALK_BIN picks the binary; default target/debug/socktalk)
//
// Every server listens on ephemeral loopback ports, except the deliberate restart on the same
// HTTP port; every wait has a timeout.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.resolve(ROOT, process.env.SOCKTALK_BIN || 'target/debug/socktalk');
const CHROMIUM = '/usr/bin/chromium';
/** How long any one wait may take before the test fails. */
const WAIT = 10_000;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'socktalk-e2e-'));
let browser;

before(async () => {
  assert.ok(fs.existsSync(BIN), `no socktalk binary at ${BIN} (cargo build, or set SOCKTALK_BIN)`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Rejects with `what` if `promise` has not settled within `ms`. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---- the server ----------------------------------------------------------------------------

let dbCount = 0;
function freshDb() {
  dbCount += 1;
  return path.join(tmp, `chat-${dbCount}.db`);
}

/**
 * Starts `socktalk serve` and reads its two "listening on" lines.
 * Returns { proc, tcpPort, url, httpPort, stop() }.
 */
async function startServer({ db = freshDb(), http = '127.0.0.1:0', extra = [] } = {}) {
  const args = ['serve', '--tcp', '127.0.0.1:0', '--http', http, '--db', db, ...extra];
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => { stderr = (stderr + chunk).slice(-4000); });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const lines = readline.createInterface({ input: proc.stdout });
  const iterator = lines[Symbol.asyncIterator]();
  const nextLine = async () => {
    const next = await within(iterator.next(), WAIT, `a line from socktalk ${args.join(' ')}`);
    if (next.done) throw new Error(`socktalk exited early; stderr: ${stderr}`);
    return next.value;
  };
  const tcpLine = await nextLine();
  const tcp = /^listening on tcp:\/\/127\.0\.0\.1:(\d+)$/.exec(tcpLine);
  assert.ok(tcp, `unexpected first line ${JSON.stringify(tcpLine)}; stderr: ${stderr}`);
  let httpLine = await nextLine();
  // With TLS on, the certificate's fingerprint follows the TCP address.
  const pinned = /^tls certificate sha256 ([0-9A-F:]+)$/.exec(httpLine);
  if (pinned) httpLine = await nextLine();
  const web = /^listening on (https?:\/\/127\.0\.0\.1:(\d+)\/)$/.exec(httpLine);
  assert.ok(web, `unexpected web line ${JSON.stringify(httpLine)}`);
  return {
    proc,
    db,
    fingerprint: pinned?.[1],
    tcpPort: Number(tcp[1]),
    url: web[1],
    httpPort: Number(web[2]),
    stderr: () => stderr,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return within(exited, WAIT, 'the server to exit');
    },
  };
}

// ---- an nc-like client ---------------------------------------------------------------------

/** A raw TCP chat member reading lines, as `nc 127.0.0.1 PORT` would. */
class LineClient {
  static async connect(port) {
    const socket = net.connect({ host: '127.0.0.1', port });
    await within(new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    }), WAIT, `connect to 127.0.0.1:${port}`);
    const client = new LineClient(socket);
    const welcome = await client.expect((l) => l.startsWith('* welcome to socktalk, '), 'the welcome');
    client.nick = /, ([^!]+)!/.exec(welcome)[1];
    return client;
  }

  constructor(socket) {
    this.socket = socket;
    this.lines = [];
    this.read = 0; // lines already looked at by expect()
    this.partial = '';
    this.closed = false;
    this.wake = () => {};
    socket.setEncoding('utf8');
    socket.setNoDelay(true);
    socket.on('data', (chunk) => {
      const parts = (this.partial + chunk).split('\n');
      this.partial = parts.pop();
      this.lines.push(...parts);
      this.wake();
    });
    socket.on('close', () => { this.closed = true; this.wake(); });
    socket.on('error', () => {});
  }

  send(line) {
    this.socket.write(`${line}\n`);
  }

  /** Reads lines until one satisfies `wanted`, and returns it. */
  async expect(wanted, what, ms = WAIT) {
    const deadline = Date.now() + ms;
    for (;;) {
      while (this.read < this.lines.length) {
        const line = this.lines[this.read++];
        if (wanted(line)) return line;
      }
      const left = deadline - Date.now();
      if (this.closed || left <= 0) {
        throw new Error(`${this.nick}: no line for ${what} (${this.closed ? 'closed' : 'timed out'}); `
          + `last lines: ${JSON.stringify(this.lines.slice(-8))}`);
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
    }
  }

  /** The next chat message line (`[#room] …` or `[pm…] …`), skipping notices. */
  nextMessage(what, ms) {
    return this.expect((l) => l.startsWith('['), what, ms);
  }

  async setNick(nick) {
    this.send(`/nick ${nick}`);
    await this.expect((l) => l === `* ${this.nick} is now known as ${nick}`, `nick ${nick}`);
    this.nick = nick;
  }

  async join(room) {
    this.send(`/join ${room}`);
    await this.expect((l) => l === `* ${this.nick} joined ${room}`, `join ${room}`);
  }

  close() {
    this.socket.destroy();
  }
}

// ---- pages ---------------------------------------------------------------------------------

/**
 * Opens the chat page in its own browser context (its own localStorage, as another person's
 * browser would have) and waits until it is connected; sets `nick` if given.
 */
async function openPage(server, nick, { viewport = { width: 1100, height: 700 } } = {}) {
  // A server with a self-signed certificate is trusted as a person would after checking its
  // fingerprint (the tests check that the page really is on https).
  const context = await browser.newContext({ viewport, ignoreHTTPSErrors: Boolean(server.fingerprint) });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  const person = { context, page, dialogs: [], errors: [] };
  page.on('dialog', (dialog) => {
    person.dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => person.errors.push(String(error)));
  await page.goto(server.url);
  await waitStatus(page, 'connected');
  // The guest's own entry in the member list: the lobby is shown and the page knows its nick.
  await page.locator('#members button', { hasText: '(you)' }).waitFor({ state: 'attached' }); // also behind ☰
  if (nick) await setNick(page, nick);
  return person;
}

async function waitStatus(page, text, timeout = WAIT) {
  await page.waitForFunction(
    (wanted) => document.getElementById('status').textContent === wanted,
    text,
    { timeout },
  );
}

/** Sets the nick through the page's nick form and waits for the server's confirmation. */
async function setNick(page, nick) {
  await page.fill('#nick', nick);
  await page.click('#nick-form button[type=submit]');
  await page.locator('#members button', { hasText: `${nick} (you)` }).waitFor({ state: 'attached' }); // also behind ☰
}

/** Joins a room through the page's join form; the page then shows that room. */
async function joinRoom(page, room) {
  await page.fill('#join-room', room);
  await page.press('#join-room', 'Enter');
  await page.locator('#rooms button', { hasText: room }).waitFor({ state: 'attached' }); // also behind ☰
  await page.waitForFunction((r) => document.getElementById('title').textContent === r, room);
}

/** Sends `text` through the page's message form, as typed. */
async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  // The form clears once the WebSocket took it.
  await page.waitForFunction(() => document.getElementById('text').value === '');
}

/** The shown message whose text is exactly `text` from `nick`, once it is there. */
async function seeMessage(page, nick, text) {
  await page.waitForFunction(([n, t]) => [...document.querySelectorAll('#messages li')].some((li) =>
    li.querySelector('.nick')?.textContent === `<${n}>` && li.querySelector('.text')?.textContent === t),
  [nick, text]);
}

function shownTexts(page) {
  return page.$$eval('#messages li .text', (spans) => spans.map((s) => s.textContent));
}

// ---- the tests -----------------------------------------------------------------------------

test('two browsers and an nc client chat in one room', { timeout: 60_000 }, async () => {
  const server = await startServer();
  try {
    const ann = await openPage(server, 'ann');
    const bob = await openPage(server, 'bob');
    const carl = await LineClient.connect(server.tcpPort);
    await carl.setNick('carl');
    await joinRoom(ann.page, '#dev');
    await joinRoom(bob.page, '#dev');
    await carl.join('#dev');
    await ann.page.locator('#members button', { hasText: /^carl$/ }).waitFor();

    await say(ann.page, 'hello from ann');
    await seeMessage(bob.page, 'ann', 'hello from ann');
    await seeMessage(ann.page, 'ann', 'hello from ann');
    assert.equal(await carl.nextMessage('ann\'s message'), '[#dev] <ann> hello from ann');

    await say(bob.page, 'bob here ✓');
    await seeMessage(ann.page, 'bob', 'bob here ✓');
    assert.equal(await carl.nextMessage('bob\'s message'), '[#dev] <bob> bob here ✓');

    carl.send('hi browsers, carl from nc');
    await seeMessage(ann.page, 'carl', 'hi browsers, carl from nc');
    await seeMessage(bob.page, 'carl', 'hi browsers, carl from nc');

    // Nothing of #dev leaked into the lobby view, and each page shows the room's three lines.
    assert.deepEqual(await shownTexts(bob.page), ['hello from ann', 'bob here ✓', 'hi browsers, carl from nc']);
    for (const person of [ann, bob]) {
      assert.deepEqual(person.errors, []);
      await person.context.close();
    }
    carl.close();
  } finally {
    await server.stop();
  }
});

test('over TLS: the page is served on https and chats over wss', { timeout: 60_000 }, async () => {
  const server = await startServer({ extra: ['--tls-self-signed'] });
  try {
    assert.match(server.url, /^https:\/\//);
    assert.match(server.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    const ann = await openPage(server, 'ann');
    const bob = await openPage(server, 'bob');
    assert.equal(await ann.page.evaluate(() => location.protocol), 'https:');
    await say(ann.page, 'encrypted hello');
    await seeMessage(bob.page, 'ann', 'encrypted hello');
    for (const person of [ann, bob]) {
      assert.deepEqual(person.errors, []);
      await person.context.close();
    }
  } finally {
    await server.stop();
  }
});

test('a private message from the member list reaches only its target', { timeout: 60_000 }, async () => {
  const server = await startServer();
  try {
    const ann = await openPage(server, 'ann');
    const bob = await openPage(server, 'bob');
    const dave = await openPage(server, 'dave');
    const carl = await LineClient.connect(server.tcpPort);
    await carl.setNick('carl');
    await ann.page.locator('#members button', { hasText: /^carl$/ }).waitFor();

    await ann.page.click('#members button:text-is("bob")');
    assert.equal(await ann.page.textContent('#title'), 'Private: bob');
    await say(ann.page, 'psst, only for bob');
    await seeMessage(ann.page, 'ann', 'psst, only for bob');

    // bob gets a private view with an unread badge; opening it shows the message.
    const fromAnn = bob.page.locator('#rooms li', { hasText: '✉ ann' });
    await fromAnn.locator('.badge', { hasText: '1' }).waitFor();
    await fromAnn.locator('button').click();
    assert.equal(await bob.page.textContent('#title'), 'Private: ann');
    await seeMessage(bob.page, 'ann', 'psst, only for bob');

    // The others: their next message is a public one sent afterwards, and the private text
    // is nowhere on dave's page.
    carl.send('public, after the private one');
    await seeMessage(dave.page, 'carl', 'public, after the private one');
    assert.equal(await carl.nextMessage('carl\'s own line'), '[#lobby] <carl> public, after the private one');
    const daveText = await dave.page.evaluate(() => document.body.innerText);
    assert.ok(!daveText.includes('psst'), daveText);
    assert.equal(await dave.page.locator('#rooms li', { hasText: '✉' }).count(), 0);

    // And an answer from bob's private view goes back to ann only.
    await say(bob.page, 'got it');
    const annFromBob = ann.page.locator('#messages li', { hasText: 'got it' });
    await annFromBob.waitFor();
    assert.ok(await annFromBob.evaluate((li) => li.classList.contains('private')));
    carl.send('second public');
    assert.equal(await carl.nextMessage('second public'), '[#lobby] <carl> second public');
    await seeMessage(dave.page, 'carl', 'second public');
    assert.ok(!(await dave.page.evaluate(() => document.body.innerText)).includes('got it'));
    for (const person of [ann, bob, dave]) await person.context.close();
    carl.close();
  } finally {
    await server.stop();
  }
});

test('a reload keeps the private conversations, until their view is closed', { timeout: 60_000 }, async () => {
  const server = await startServer();
  try {
    const ann = await openPage(server, 'ann');
    const bob = await openPage(server, 'bob');
    await ann.page.click('#members button:text-is("bob")');
    await say(ann.page, 'said before the reload');
    await seeMessage(ann.page, 'ann', 'said before the reload');
    await bob.page.locator('#rooms li', { hasText: '✉ ann' }).locator('button').click();
    await seeMessage(bob.page, 'ann', 'said before the reload');

    // bob reloads while looking at the conversation: it is on screen again, before and after
    // the page is connected, and an answer goes on in it.
    await bob.page.reload();
    await waitStatus(bob.page, 'connected');
    assert.equal(await bob.page.textContent('#title'), 'Private: ann');
    await seeMessage(bob.page, 'ann', 'said before the reload');
    await say(bob.page, 'answered after it');
    await seeMessage(ann.page, 'bob', 'answered after it');

    // ann reloads from #lobby: the conversation is listed, with both lines in order.
    await ann.page.click('#rooms button:text-matches("^#lobby")');
    await ann.page.reload();
    await waitStatus(ann.page, 'connected');
    await ann.page.locator('#rooms li', { hasText: '✉ bob' }).locator('button').click();
    assert.deepEqual(
      await ann.page.locator('#messages li .text').allTextContents(),
      ['said before the reload', 'answered after it'],
    );

    // Closing the view forgets it for good.
    await ann.page.click('#leave');
    await ann.page.reload();
    await waitStatus(ann.page, 'connected');
    await ann.page.locator('#members button', { hasText: 'ann (you)' }).waitFor();
    assert.equal(await ann.page.locator('#rooms li', { hasText: '✉' }).count(), 0);
    assert.deepEqual(ann.errors, []);
    assert.deepEqual(bob.errors, []);
    for (const person of [ann, bob]) await person.context.close();
  } finally {
    await server.stop();
  }
});

test('markup sent from nc shows as literal text and runs nothing', { timeout: 60_000 }, async () => {
  const server = await startServer();
  try {
    const ann = await openPage(server, 'ann');
    const carl = await LineClient.connect(server.tcpPort);
    await carl.setNick('mallory');
    const payload = '<img src=x onerror=alert(1)><script>alert(2)</script>';
    carl.send(payload);
    await seeMessage(ann.page, 'mallory', payload);
    // Something after it, so any handler the markup could have set up had its chance.
    carl.send('/me grins');
    await ann.page.locator('#messages li', { hasText: '* mallory' }).waitFor();
    await ann.page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0))));

    assert.equal(await ann.page.locator('#messages img').count(), 0);
    assert.equal(await ann.page.locator('#messages script').count(), 0);
    assert.equal(await ann.page.locator('img').count(), 0);
    assert.deepEqual(ann.dialogs, []);
    assert.deepEqual(ann.errors, []);
    const texts = await shownTexts(ann.page);
    assert.ok(texts.includes(payload), JSON.stringify(texts));
    await ann.context.close();
    carl.close();
  } finally {
    await server.stop();
  }
});

test('the page reconnects after the server restarts on the same port', { timeout: 90_000 }, async () => {
  const db = freshDb();
  const first = await startServer({ db });
  let second;
  try {
    const ann = await openPage(first, 'ann');
    await joinRoom(ann.page, '#dev');
    await say(ann.page, 'before the restart');
    await seeMessage(ann.page, 'ann', 'before the restart');

    // A crash: nothing graceful.
    await first.stop('SIGKILL');
    await ann.page.waitForFunction(() => document.getElementById('status').textContent.startsWith('disconnected'));

    second = await startServer({ db, http: `127.0.0.1:${first.httpPort}` });
    assert.equal(second.httpPort, first.httpPort);
    await waitStatus(ann.page, 'reconnected', 20_000);
    // The page takes its nick and rooms back, and its view of #dev is intact.
    await ann.page.locator('#members button', { hasText: 'ann (you)' }).waitFor();
    await ann.page.locator('#rooms button', { hasText: '#dev' }).waitFor();
    assert.equal(await ann.page.textContent('#title'), '#dev');
    // History replayed on rejoin is merged, not repeated.
    assert.deepEqual((await shownTexts(ann.page)).filter((t) => t === 'before the restart'), ['before the restart']);

    const carl = await LineClient.connect(second.tcpPort);
    await carl.setNick('carl');
    await carl.join('#dev');
    await ann.page.locator('#members button', { hasText: /^carl$/ }).waitFor();
    await say(ann.page, 'after the restart');
    assert.equal(await carl.nextMessage('ann\'s message after the restart'), '[#dev] <ann> after the restart');
    carl.send('welcome back');
    await seeMessage(ann.page, 'carl', 'welcome back');
    assert.deepEqual(ann.errors, []);
    await ann.context.close();
    carl.close();
  } finally {
    await first.stop();
    await second?.stop();
  }
});

test('after a reconnect the page fetches what was said while it was away', { timeout: 90_000 }, async () => {
  // A short replay on join, so that most of what was missed is not in it.
  const server = await startServer({ extra: ['--history', '5', '--max-rate', '0'] });
  try {
    const ann = await openPage(server, 'ann');
    await joinRoom(ann.page, '#dev');
    const carl = await LineClient.connect(server.tcpPort);
    await carl.setNick('carl');
    await carl.join('#dev');
    carl.send('before');
    await seeMessage(ann.page, 'carl', 'before');

    // The connection drops (a laptop asleep, a Wi-Fi change) while the server carries on;
    // the page waits a few seconds before it reconnects.
    await ann.page.evaluate(() => { state.retry = 2; state.ws.close(); });
    await ann.page.waitForFunction(() => document.getElementById('status').textContent.startsWith('disconnected'));
    // More than one request's worth (500), so the gap is filled in two.
    const missed = Array.from({ length: 620 }, (_, i) => `missed ${i}`);
    carl.socket.write(missed.map((t) => `${t}\n`).join(''));
    await carl.expect((l) => l === '[#dev] <carl> missed 619', 'carl\'s last message');
    await waitStatus(ann.page, 'reconnected', 20_000);

    // Every message is there once, in order, with no gap between the old ones and the replay.
    const wanted = ['before', ...missed];
    await ann.page.waitForFunction((w) => {
      const shown = [...document.querySelectorAll('#messages li .text')].map((s) => s.textContent);
      return JSON.stringify(shown) === JSON.stringify(w);
    }, wanted).catch(async (error) => {
      assert.deepEqual(await shownTexts(ann.page), wanted, String(error));
    });
    carl.send('after');
    await seeMessage(ann.page, 'carl', 'after');
    assert.deepEqual(await shownTexts(ann.page), [...wanted, 'after']);
    assert.deepEqual(ann.errors, []);
    await ann.context.close();
    carl.close();
  } finally {
    await server.stop();
  }
});

test('older messages loaded go above, and notices stay where they happened', { timeout: 60_000 }, async () => {
  const server = await startServer({ extra: ['--history', '5'] });
  try {
    const carl = await LineClient.connect(server.tcpPort);
    await carl.setNick('carl');
    await carl.join('#dev');
    const old = Array.from({ length: 10 }, (_, i) => `old ${i}`);
    for (const text of old) carl.send(text);
    await carl.expect((l) => l === '[#dev] <carl> old 9', 'carl\'s last old message');

    const ann = await openPage(server, 'ann');
    await joinRoom(ann.page, '#dev');
    const dave = await LineClient.connect(server.tcpPort);
    const guest = dave.nick;
    await dave.setNick('dave');
    await dave.join('#dev');
    carl.send('new');
    await seeMessage(ann.page, 'carl', 'new');
    await ann.page.click('#older');
    await seeMessage(ann.page, 'carl', 'old 0');

    const shown = await ann.page.$$eval('#messages li', (lis) => lis.map((li) => li.querySelector('.text')?.textContent ?? li.textContent));
    assert.deepEqual(shown, [...old, 'ann joined #dev', `${guest} is now known as dave`, 'dave joined #dev', 'new']);
    assert.deepEqual(ann.errors, []);
    await ann.context.close();
    carl.close();
    dave.close();
  } finally {
    await server.stop();
  }
});

test('a crowd arriving costs the page a few requests, not two each', { timeout: 60_000 }, async () => {
  const server = await startServer();
  const crowd = [];
  try {
    const ann = await openPage(server, 'ann');
    let sent = 0;
    ann.page.on('websocket', (ws) => ws.on('framesent', () => { sent += 1; }));
    // The page's WebSocket is already open: count from a fresh one.
    await ann.page.reload();
    await waitStatus(ann.page, 'connected');
    await ann.page.locator('#members button', { hasText: 'ann (you)' }).waitFor();
    const before = sent;

    // Everyone comes back at once, as after a server restart; well past --burst 40 if the page
    // asked for the member list and room sizes on each arrival.
    crowd.push(...await Promise.all(Array.from({ length: 40 }, () => LineClient.connect(server.tcpPort))));
    for (const { nick } of crowd) {
      await ann.page.locator('#members button', { hasText: new RegExp(`^${nick}$`) }).waitFor();
    }
    await ann.page.locator('#rooms button', { hasText: '#lobby (41)' }).waitFor();
    assert.ok(sent - before <= 12, `${sent - before} requests for 40 arrivals`);
    assert.ok(await ann.page.isHidden('#error'), await ann.page.textContent('#error'));
    assert.deepEqual(ann.errors, []);
    await ann.context.close();
  } finally {
    for (const client of crowd) client.close();
    await server.stop();
  }
});

test('a message too long is refused by the page and stays in the box', { timeout: 60_000 }, async () => {
  const server = await startServer({ extra: ['--max-line', '200'] });
  try {
    const ann = await openPage(server, 'ann');
    const carl = await LineClient.connect(server.tcpPort);
    await carl.setNick('carl');
    await ann.page.locator('#members button', { hasText: /^carl$/ }).waitFor();
    // 100 characters, but 300 bytes of UTF-8.
    const long = '你'.repeat(100);
    await ann.page.fill('#text', long);
    await ann.page.press('#text', 'Enter');
    const error = ann.page.locator('#error');
    await error.waitFor({ state: 'visible' });
    assert.match(await error.textContent(), /^message too long: \d+ bytes, the server takes at most 200 \(--max-line\); it was not sent$/);
    assert.equal(await ann.page.inputValue('#text'), long);
    // Shortened, it goes.
    await say(ann.page, '你'.repeat(50));
    assert.equal(await carl.nextMessage('ann\'s shorter message'), `[#lobby] <ann> ${'你'.repeat(50)}`);
    assert.deepEqual(ann.errors, []);
    await ann.context.close();
    carl.close();
  } finally {
    await server.stop();
  }
});

test('a typed /quit leaves the chat for good', { timeout: 60_000 }, async () => {
  const server = await startServer();
  try {
    const ann = await openPage(server, 'ann');
    const carl = await LineClient.connect(server.tcpPort);
    await carl.setNick('carl');
    await ann.page.locator('#members button', { hasText: /^carl$/ }).waitFor();
    await say(ann.page, '/quit lunch');
    await carl.expect((l) => l === '* ann quit (lunch)', 'ann\'s quit');
    await waitStatus(ann.page, 'you left the chat; reload the page to come back');
    // Past the first reconnect's wait (at most 1.25 s), ann is still away.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    carl.send('/who');
    assert.equal(await carl.expect((l) => l.startsWith('* #lobby ('), 'the member list'), '* #lobby (1): carl');
    assert.deepEqual(ann.errors, []);
    await ann.context.close();
    carl.close();
  } finally {
    await server.stop();
  }
});

test('"load older" brings back what a long-open view dropped', { timeout: 90_000 }, async () => {
  const server = await startServer({ extra: ['--max-rate', '0'] });
  try {
    const ann = await openPage(server, 'ann');
    await joinRoom(ann.page, '#busy');
    const carl = await LineClient.connect(server.tcpPort);
    await carl.setNick('carl');
    await carl.join('#busy');
    // More than the 2,000 a view keeps.
    const all = Array.from({ length: 2100 }, (_, i) => `m ${i}`);
    carl.socket.write(all.map((t) => `${t}\n`).join(''));
    await seeMessage(ann.page, 'carl', 'm 2099');
    const count = () => ann.page.$$eval('#messages li .text', (spans) => spans.length);
    assert.equal(await count(), 2000);

    // Scrolling back up pages through the dropped messages, to the room's start.
    for (let pages = 0; await ann.page.isVisible('#older'); pages += 1) {
      assert.ok(pages < 5, 'still more to load after 5 pages');
      const before = await count();
      await ann.page.click('#older');
      await ann.page.waitForFunction((n) => document.querySelectorAll('#messages li .text').length > n
        || document.getElementById('older').hidden, before);
    }
    assert.deepEqual(await shownTexts(ann.page), all);
    assert.deepEqual(ann.errors, []);
    await ann.context.close();
    carl.close();
  } finally {
    await server.stop();
  }
});

test('a reload keeps the nick, the rooms and the room on screen', { timeout: 60_000 }, async () => {
  const server = await startServer();
  try {
    const ann = await openPage(server, 'ann');
    await joinRoom(ann.page, '#dev');
    await joinRoom(ann.page, '#random');
    await ann.page.click('#rooms button:text-matches("^#dev ")');
    await ann.page.waitForFunction(() => document.getElementById('title').textContent === '#dev');
    await ann.page.reload();
    await waitStatus(ann.page, 'connected');
    await ann.page.locator('#members button', { hasText: 'ann (you)' }).waitFor();
    for (const room of ['#lobby', '#dev', '#random']) await ann.page.locator('#rooms button', { hasText: room }).waitFor();
    await ann.page.waitForFunction(() => document.getElementById('title').textContent === '#dev');
    assert.deepEqual(ann.errors, []);
    await ann.context.close();
  } finally {
    await server.stop();
  }
});

test('a nick still held by its old connection after a reconnect comes back once that one quits', { timeout: 60_000 }, async () => {
  const server = await startServer();
  try {
    const ann = await openPage(server, 'ann');
    const carl = await LineClient.connect(server.tcpPort);
    await carl.setNick('carl');
    // ann's connection drops; before the page is back, something holds "ann" (as her old
    // connection would, until the server notices it is gone).
    await ann.page.evaluate(() => { state.retry = 2; state.ws.close(); });
    await ann.page.waitForFunction(() => document.getElementById('status').textContent.startsWith('disconnected'));
    const ghost = await LineClient.connect(server.tcpPort);
    await ghost.setNick('ann');
    await waitStatus(ann.page, 'reconnected', 20_000);
    await ann.page.locator('#error', { hasText: "nick 'ann' is taken" }).waitFor();

    ghost.send('/quit');
    await carl.expect((l) => l === '* ann quit', 'the old ann\'s quit');
    await ann.page.locator('#members button', { hasText: 'ann (you)' }).waitFor();
    await say(ann.page, 'back as ann');
    assert.equal(await carl.nextMessage('ann\'s message'), '[#lobby] <ann> back as ann');
    assert.deepEqual(ann.errors, []);
    await ann.context.close();
    carl.close();
  } finally {
    await server.stop();
  }
});

test('after a restart without history (--db :memory:) new messages are not taken for old ones', { timeout: 90_000 }, async () => {
  const first = await startServer({ db: ':memory:' });
  let second;
  try {
    const ann = await openPage(first, 'ann');
    const carl = await LineClient.connect(first.tcpPort);
    await carl.setNick('carl');
    for (const text of ['one', 'two', 'three']) carl.send(text);
    await seeMessage(ann.page, 'carl', 'three');
    carl.close();
    await first.stop();
    await ann.page.waitForFunction(() => document.getElementById('status').textContent.startsWith('disconnected'));

    // The new server numbers its messages from 1 again.
    second = await startServer({ db: ':memory:', http: `127.0.0.1:${first.httpPort}` });
    await waitStatus(ann.page, 'reconnected', 20_000);
    await ann.page.locator('#messages li.notice', { hasText: 'the server has another history now' }).waitFor();
    const dave = await LineClient.connect(second.tcpPort);
    await dave.setNick('dave');
    for (const text of ['fresh one', 'fresh two']) dave.send(text);
    await seeMessage(ann.page, 'dave', 'fresh two');
    assert.deepEqual(await shownTexts(ann.page), ['fresh one', 'fresh two']);
    assert.deepEqual(ann.errors, []);
    await ann.context.close();
    dave.close();
  } finally {
    await first.stop();
    await second?.stop();
  }
});

test('an error from the server is shown on the page', { timeout: 60_000 }, async () => {
  const server = await startServer();
  try {
    const ann = await openPage(server, 'ann');
    const other = await openPage(server);
    const guest = await other.page.inputValue('#nick');
    assert.match(guest, /^guest\d+$/);
    await other.page.fill('#nick', 'ANN');
    await other.page.click('#nick-form button[type=submit]');
    const error = other.page.locator('#error');
    await error.waitFor({ state: 'visible' });
    assert.equal(await error.textContent(), "nick 'ANN' is taken");
    // The page still works under its old nick.
    await say(other.page, 'still a guest');
    await seeMessage(ann.page, guest, 'still a guest');
    // A refused nick is not one to ask for again: after a reload the page is a new guest,
    // with no error (it would arrive before the answer to anything sent later).
    await other.page.reload();
    await waitStatus(other.page, 'connected');
    const again = await other.page.inputValue('#nick');
    assert.match(again, /^guest\d+$/);
    await say(other.page, 'reloaded');
    await seeMessage(other.page, again, 'reloaded');
    assert.ok(await other.page.isHidden('#error'), await other.page.textContent('#error'));
    await ann.context.close();
    await other.context.close();
  } finally {
    await server.stop();
  }
});

test('a typed /login is masked, never shown or kept, and brings the mail kept', { timeout: 60_000 }, async () => {
  const server = await startServer();
  try {
    const password = 'correct-horse-battery';
    const owner = await LineClient.connect(server.tcpPort);
    await owner.setNick('ann');
    owner.send(`/register ${password}`);
    await owner.expect((l) => l.startsWith('* ann is registered to you now'), 'the registration');
    owner.send('/quit');
    await owner.expect((l) => l === '* bye', 'bye');
    const carl = await LineClient.connect(server.tcpPort);
    await carl.setNick('carl');
    carl.send('/msg ann kept for you');
    await carl.expect((l) => l.startsWith('* ann is offline; your message is kept'), 'kept mail');

    const ann = await openPage(server);
    await ann.page.fill('#text', `/login ann ${password}`);
    assert.ok(await ann.page.$eval('#text', (input) => input.classList.contains('secret')));
    await ann.page.press('#text', 'Enter');
    await ann.page.waitForFunction(() => document.getElementById('text').value === '');
    assert.ok(!(await ann.page.$eval('#text', (input) => input.classList.contains('secret'))));
    await ann.page.locator('#messages li.notice', { hasText: 'you are logged in as ann' }).waitFor();
    await ann.page.locator('#members button', { hasText: 'ann (you)' }).waitFor({ state: 'attached' }); // also behind ☰
    // The message kept while ann was away waits in its own conversation.
    await ann.page.locator('#rooms li', { hasText: '✉ carl' }).locator('button').click();
    await seeMessage(ann.page, 'carl', 'kept for you');
    // The password is nowhere on the page, in the form, or in the page's storage.
    const everything = await ann.page.evaluate(() => document.body.innerText
      + document.getElementById('text').value
      + JSON.stringify(sessionStorage) + JSON.stringify(localStorage));
    assert.ok(!everything.includes(password), everything);
    assert.deepEqual(ann.errors, []);
    await ann.context.close();
    carl.close();
  } finally {
    await server.stop();
  }
});

test('screenshots: a conversation on a desktop, and the phone layout', { timeout: 90_000 }, async () => {
  const server = await startServer();
  try {
    const ann = await openPage(server, 'ann');
    const bob = await openPage(server, 'bob');
    const carl = await LineClient.connect(server.tcpPort);
    await carl.setNick('carl');
    await joinRoom(ann.page, '#random');
    await joinRoom(bob.page, '#random');
    await joinRoom(ann.page, '#dev');
    await joinRoom(bob.page, '#dev');
    await carl.join('#dev');
    await ann.page.locator('#members button', { hasText: /^carl$/ }).waitFor();

    await say(bob.page, 'morning! the web chat is up: http://127.0.0.1:8080/');
    await seeMessage(ann.page, 'bob', 'morning! the web chat is up: http://127.0.0.1:8080/');
    carl.send('nice. I am on nc, gbk and all: 你好');
    await seeMessage(ann.page, 'carl', 'nice. I am on nc, gbk and all: 你好');
    await say(ann.page, 'same room, three kinds of client ✓');
    await seeMessage(bob.page, 'ann', 'same room, three kinds of client ✓');
    await say(bob.page, '/me ships it');
    await ann.page.locator('#messages li', { hasText: '* bob' }).waitFor();
    // A message in the other room: an unread badge on #random.
    await bob.page.click('#rooms button:text-is("#random (2)")');
    await say(bob.page, 'lunch?');
    await ann.page.locator('#rooms li', { hasText: '#random' }).locator('.badge', { hasText: '1' }).waitFor();
    assert.equal(await ann.page.textContent('#title'), '#dev');
    // A new room has no older messages to load.
    assert.ok(await ann.page.isHidden('#older'), '"Load older messages" shows in a new room');

    fs.mkdirSync(path.join(ROOT, 'docs'), { recursive: true });
    const shot = path.join(ROOT, 'docs', 'screenshot.png');
    await ann.page.screenshot({ path: shot });
    assert.ok(fs.statSync(shot).size > 10_000);

    // A phone: the side panel is tucked away behind ☰, the message form is on screen.
    const phone = await openPage(server, 'dana', { viewport: { width: 390, height: 844 } });
    const { page } = phone;
    const isOpen = () => page.waitForFunction(() => document.getElementById('side').getBoundingClientRect().left >= 0);
    const isClosed = async () => {
      await page.waitForFunction(() => document.getElementById('side').getBoundingClientRect().right <= 0);
      await page.locator('#side').waitFor({ state: 'hidden' }); // and out of the tab order
    };
    // Joining is behind ☰ there; the panel closes on the room joined.
    await page.click('#menu');
    await isOpen();
    await joinRoom(page, '#dev');
    await isClosed();
    carl.send('hello phone');
    await seeMessage(page, 'carl', 'hello phone');
    const inView = (selector) => page.$eval(selector, (el) => {
      const r = el.getBoundingClientRect();
      return r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= innerWidth + 0.5
        && r.top >= 0 && r.bottom <= innerHeight + 0.5;
    });
    assert.ok(await page.isVisible('#menu'), 'the ☰ button shows');
    assert.equal(await page.getAttribute('#menu', 'aria-expanded'), 'false');
    assert.ok(await inView('#send-form'), 'the message form is on screen');
    assert.ok(await inView('#text'));
    const sideRight = await page.$eval('#side', (el) => el.getBoundingClientRect().right);
    assert.ok(sideRight <= 0, `the side panel is off screen (right edge at ${sideRight})`);
    const textWidth = await page.$eval('#text', (el) => el.getBoundingClientRect().width);
    assert.ok(textWidth > 200, `the message box is usable (${textWidth}px)`);
    const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(scrollWidth <= 390, `no sideways scrolling (${scrollWidth}px)`);
    await say(page, 'typed on a phone');
    assert.equal(await carl.expect((l) => l.endsWith('typed on a phone'), 'the phone message'),
      '[#dev] <dana> typed on a phone');
    const phoneShot = path.join(tmp, 'phone.png');
    await page.screenshot({ path: phoneShot });

    // ☰ opens the panel (which then covers ☰); a tap beside it closes it, and so does
    // choosing a room.
    await page.click('#menu');
    await isOpen();
    assert.equal(await page.getAttribute('#menu', 'aria-expanded'), 'true');
    assert.ok(await inView('#side'));
    await page.mouse.click(375, 600);
    await isClosed();
    assert.equal(await page.getAttribute('#menu', 'aria-expanded'), 'false');
    await page.click('#menu');
    await isOpen();
    await page.screenshot({ path: path.join(tmp, 'phone-menu.png') });
    await page.click('#rooms button:text-is("#lobby (4)")');
    await isClosed();
    assert.equal(await page.textContent('#title'), '#lobby');
    if (process.env.SOCKTALK_E2E_KEEP) {
      for (const name of ['phone.png', 'phone-menu.png']) fs.copyFileSync(path.join(tmp, name), path.join(process.env.SOCKTALK_E2E_KEEP, name));
    }
    for (const person of [ann, bob, phone]) await person.context.close();
    carl.close();
  } finally {
    await server.stop();
  }
});

test('send → nc receive latency over 1,000 messages', { timeout: 180_000 }, async (t) => {
  const server = await startServer({ extra: ['--max-rate', '0'] });
  try {
    const ann = await openPage(server, 'ann');
    const carl = await LineClient.connect(server.tcpPort);
    await carl.setNick('carl');
    await ann.page.locator('#members button', { hasText: /^carl$/ }).waitFor();
    const { page } = ann;
    // What a person's Enter does: fill the box, submit the form.
    const submit = (text) => page.evaluate((t) => {
      document.getElementById('text').value = t;
      document.getElementById('send-form').requestSubmit();
    }, text);

    const ms = (from, to) => Number(to - from) / 1e6;
    const round = async (text) => {
      const start = process.hrtime.bigint();
      await submit(text);
      const line = await carl.nextMessage(text);
      const end = process.hrtime.bigint();
      assert.equal(line, `[#lobby] <ann> ${text}`, 'in order, none missing');
      return ms(start, end);
    };
    for (let i = 0; i < 20; i += 1) await round(`warm-up ${i}`);

    // What page.evaluate alone costs (the DevTools protocol round trip), for scale.
    const overhead = [];
    for (let i = 0; i < 100; i += 1) {
      const start = process.hrtime.bigint();
      await page.evaluate(() => 0);
      overhead.push(ms(start, process.hrtime.bigint()));
    }

    const times = [];
    for (let i = 0; i < 1000; i += 1) times.push(await round(`latency ${i}`));
    assert.equal(times.length, 1000);

    const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    const sorted = [...times].sort((a, b) => a - b);
    overhead.sort((a, b) => a - b);
    const report = `browser send → nc receive, 1000 messages one at a time: `
      + `median ${quantile(sorted, 0.5).toFixed(2)} ms, p90 ${quantile(sorted, 0.9).toFixed(2)} ms, `
      + `max ${sorted[sorted.length - 1].toFixed(2)} ms `
      + `(page.evaluate alone: median ${quantile(overhead, 0.5).toFixed(2)} ms)`;
    console.log(report);
    t.diagnostic(report);
    // The page kept every one, in order.
    await seeMessage(page, 'ann', 'latency 999');
    const shown = (await shownTexts(page)).filter((x) => x.startsWith('latency '));
    assert.deepEqual(shown, times.map((_, i) => `latency ${i}`));
    await ann.context.close();
    carl.close();
  } finally {
    await server.stop();
  }
});
