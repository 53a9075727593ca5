// socktalk web client: the chat server's JSON mode over a WebSocket.
// Every piece of text from the network is inserted with textContent, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
// Per tab: a reload keeps your nick and rooms; a second tab is a second guest.
const store = window.sessionStorage;
const MAX_KEPT = 2000;       // messages kept per view
const PAGE = 50;             // messages per "load older"
const GAP_PAGE = 500;        // messages per request filling a gap after a reconnect
const REFRESH_MS = 500;      // member lists and room sizes are asked for at most this often
const PRIVATE_KEPT = 200;    // messages of each private conversation a reload brings back

const state = {
  ws: null,
  nick: '',
  current: null,             // '#room' or '@nick'
  joined: [],                // rooms joined, as the server says
  views: new Map(),          // key -> { items: [], unread: 0, oldest: null, exhausted: false }
  members: new Map(),        // room -> [nick]
  allRooms: [],
  retry: 0,
  maxLine: Infinity,         // the longest request the server reads, in bytes (its welcome says)
  everConnected: false,      // so that a later open says "reconnected"
  hasQuit: false,            // left with a typed /quit: not reconnected
  showNext: null,            // a room the person asked to join: shown once the server confirms
  wanted: JSON.parse(store.getItem('socktalk.rooms') || '[]'),
};

function view(key) {
  if (!state.views.has(key)) {
    state.views.set(key, {
      items: [], unread: 0, oldest: null, exhausted: false, loading: false, filling: false, resumeAfter: null,
    });
  }
  return state.views.get(key);
}

function send(request) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    const json = JSON.stringify(request);
    // Refused here rather than by the server, so that the text stays in the box.
    const bytes = new TextEncoder().encode(json).length;
    if (bytes > state.maxLine) {
      showError(`message too long: ${bytes} bytes, the server takes at most ${state.maxLine} (--max-line); it was not sent`);
      return false;
    }
    state.ws.send(json);
    return true;
  }
  showError('not connected; your message was not sent');
  return false;
}

// ---- connection -------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  state.ws = ws;
  setStatus('connecting…');
  ws.onopen = () => {
    state.retry = 0;
    setStatus(state.everConnected ? 'reconnected' : 'connected');
    if (state.everConnected) resume();
    state.everConnected = true;
    // After a reconnect or a reload, the room on screen stays there once it is joined again.
    const shown = state.current || store.getItem('socktalk.current');
    if (shown && shown.startsWith('#')) state.showNext = shown;
    const nick = store.getItem('socktalk.nick');
    if (nick) send({ type: 'nick', nick });
    for (const room of state.wanted) send({ type: 'join', room });
    send({ type: 'rooms' });
  };
  ws.onmessage = (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    handle(message);
  };
  ws.onclose = (event) => {
    if (state.hasQuit) {
      setStatus('you left the chat; reload the page to come back');
      return;
    }
    // The server says why in its close frame: "server shutting down" (1001), "idle for …"
    // (1000), "disconnected for not reading" (1008), …
    const why = event.reason ? ` (${event.reason})` : '';
    const wait = Math.min(30, 2 ** state.retry) * (0.75 + Math.random() / 2);
    state.retry += 1;
    setStatus(`disconnected${why}; reconnecting in ${Math.round(wait)} s`);
    setTimeout(connect, wait * 1000);
  };
}

// ---- events from the server -------------------------------------------------------------

function handle(m) {
  switch (m.type) {
    case 'welcome':
      state.nick = m.nick;
      if (m.max_line) state.maxLine = m.max_line;
      if (m.last_id !== undefined && m.last_id < newestSeen()) forgetHistory();
      $('nick').value = m.nick;
      break;
    case 'state': {
      state.nick = m.nick;
      if (document.activeElement !== $('nick')) $('nick').value = m.nick;
      state.joined = m.rooms;
      const keep = state.joined.filter((r) => r !== '#lobby');
      store.setItem('socktalk.rooms', JSON.stringify(keep));
      state.wanted = keep;
      if (state.showNext && state.joined.includes(state.showNext)) {
        show(state.showNext);
        state.showNext = null;
      } else if (!state.current || (state.current.startsWith('#') && !state.joined.includes(state.current)
          && state.current !== state.showNext)) {
        show(m.room || state.joined[0] || null);
      }
      renderRooms();
      renderMembers();
      break;
    }
    case 'message':
      add(m.room, m);
      break;
    case 'private':
      add('@' + (m.nick === state.nick ? m.to : m.nick), m);
      break;
    case 'history':
      addHistory(m.room, m.messages);
      break;
    case 'join':
    case 'part':
      notice(m.room, `${m.nick} ${m.type === 'join' ? 'joined' : 'left'} ${m.room}`);
      refreshSoon();
      break;
    case 'nick':
      if (m.old === state.nick) {
        state.nick = m.new;
        store.setItem('socktalk.nick', m.new);
      }
      for (const room of roomsWith(m.old)) notice(room, `${m.old} is now known as ${m.new}`);
      for (const [room, nicks] of state.members) state.members.set(room, nicks.map((n) => (n === m.old ? m.new : n)));
      renamePrivate(m.old, m.new);
      renderMembers();
      break;
    case 'quit':
      for (const room of roomsWith(m.nick)) notice(room, `${m.nick} quit${m.reason ? ` (${m.reason})` : ''}`);
      for (const [room, nicks] of state.members) state.members.set(room, nicks.filter((n) => n !== m.nick));
      renderMembers();
      reclaimNick(m.nick);
      break;
    case 'who':
      state.members.set(m.room, m.nicks);
      if (m.room === state.current) renderMembers();
      break;
    case 'rooms':
      state.allRooms = m.rooms;
      renderRooms();
      break;
    case 'info':
      if (state.current) notice(state.current, m.text);
      break;
    case 'warning':
      showError(m.text, 'warning');
      break;
    case 'error':
      showError(m.text);
      break;
    case 'registered':
      notice(state.current, `${m.nick} is registered to you now; /login ${m.nick} PASSWORD claims it from anywhere`);
      break;
    case 'logged_in':
      notice(state.current, `you are logged in as ${m.nick}`);
      break;
    case 'logged_out':
      notice(state.current, `you are no longer logged in as ${m.nick}: ${m.reason}`);
      break;
    case 'password_changed':
      notice(state.current, `the password of ${m.nick} is changed`);
      break;
    case 'mail':
      // Private messages kept while this nick was offline: each in its conversation.
      notice(state.current, `${m.messages.length} message${m.messages.length === 1 ? '' : 's'} kept for you while you were away`);
      for (const kept of m.messages) add('@' + kept.nick, kept);
      break;
    case 'kept':
      add('@' + m.to, m);
      notice('@' + m.to, `${m.to} is offline; your message is kept and delivered when they log in`);
      break;
  }
}

// Who is in the room on screen and how many are in each room, asked again after joins and parts:
// once for all those that come within REFRESH_MS. A crowd arriving (everyone reconnecting after a
// restart) would otherwise cost two requests per arrival and run into the server's --max-rate.
let refreshTimer = null;
function refreshSoon() {
  if (refreshTimer !== null) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    if (state.current && state.current.startsWith('#')) send({ type: 'who', room: state.current });
    send({ type: 'rooms' });
  }, REFRESH_MS);
}

// This tab's nick, asked for again on reconnecting, may still be held by its old connection
// (one the server has not yet seen drop, or a duplicated tab): once that one quits, the page
// takes the nick back.
function reclaimNick(freed) {
  const mine = store.getItem('socktalk.nick');
  const same = (a, b) => a.toLowerCase() === b.toLowerCase();
  if (mine && same(freed, mine) && !same(state.nick, mine)) send({ type: 'nick', nick: mine });
}

// The joined rooms where `nick` was last seen (or the room on screen, if none is known).
function roomsWith(nick) {
  const rooms = state.joined.filter((room) => (state.members.get(room) || []).includes(nick));
  if (rooms.length > 0) return rooms;
  return state.current && state.current.startsWith('#') ? [state.current] : [];
}

// A private conversation follows its partner's new nick.
function renamePrivate(old, renamed) {
  const from = '@' + old;
  if (!state.views.has(from)) return;
  const to = '@' + renamed;
  state.views.set(to, state.views.get(from));
  state.views.delete(from);
  savePrivatesSoon();
  if (state.current === from) show(to);
  else renderRooms();
}

// The server stores private messages but never replays them (a guest's nick is no identity), so the page keeps
// each conversation's last PRIVATE_KEPT messages in this tab's sessionStorage: a reload brings
// them back, closing the tab forgets them. Saved once per task, however many came in it.
let privatesPending = false;
function savePrivatesSoon() {
  if (privatesPending) return;
  privatesPending = true;
  queueMicrotask(() => {
    privatesPending = false;
    const kept = {};
    for (const [key, v] of state.views) {
      if (!key.startsWith('@')) continue;
      const messages = v.items.filter((x) => x.id !== undefined).slice(-PRIVATE_KEPT);
      if (messages.length > 0) kept[key] = messages;
    }
    try {
      store.setItem('socktalk.private', JSON.stringify(kept));
    } catch {
      // The tab's storage is full: the conversations stay on screen, a reload loses them.
    }
  });
}

function restorePrivates() {
  let kept = {};
  try { kept = JSON.parse(store.getItem('socktalk.private') || '{}'); } catch { return; }
  for (const [key, messages] of Object.entries(kept)) {
    if (key.startsWith('@') && Array.isArray(messages)) view(key).items = messages;
  }
  const shown = store.getItem('socktalk.current');
  if (shown && state.views.has(shown)) show(shown);
}

function add(key, m) {
  const v = view(key);
  if (v.items.some((x) => x.id !== undefined && x.id === m.id)) return;
  v.items.push(m);
  if (v.oldest === null && m.id !== undefined) v.oldest = m.id;
  if (v.items.length > MAX_KEPT) dropOldest(key, v);
  if (key.startsWith('@') && m.id !== undefined) savePrivatesSoon();
  if (key === state.current) {
    append(m);
  } else {
    v.unread += 1;
    renderRooms();
  }
}

// A view keeps its last MAX_KEPT items; "load older" fetches again what it dropped.
function dropOldest(key, v) {
  v.items.shift();
  const first = v.items.find((x) => x.id !== undefined);
  if (first) {
    v.oldest = first.id;
    v.exhausted = false;
  }
  if (key === state.current) {
    $('messages').firstElementChild?.remove();
    $('older').hidden = !key.startsWith('#');
  }
}

function notice(key, text) {
  if (!key) return;
  add(key, { notice: text });
}

function addHistory(room, messages) {
  const v = view(room);
  const known = new Set(v.items.filter((x) => x.id !== undefined).map((x) => x.id));
  const older = messages.filter((x) => !known.has(x.id));
  // An answer to "load older" that comes back short means the start of the room is reached.
  if (v.loading && messages.length < PAGE) v.exhausted = true;
  if (messages.length === 0) v.exhausted = true;
  v.loading = false;
  if (older.length > 0) {
    v.items = merged(v.items, older);
    v.oldest = Math.min(...v.items.filter((x) => x.id !== undefined).map((x) => x.id));
  }
  fillGap(room, v, messages);
  if (older.length === 0) { if (room === state.current) renderLog(false); return; }
  if (room === state.current) renderLog(messages.length > 0 && v.items.length > older.length);
}

// `items` with `messages` put in place by id. A notice (which has none) stays just after the
// message it followed, or just before the first, if it came first.
function merged(items, messages) {
  const ids = items.filter((x) => x.id !== undefined).map((x) => x.id);
  let last = ids.length > 0 ? Math.min(...ids) - 1 : Infinity;
  const keyed = items.map((x) => {
    if (x.id !== undefined) last = x.id;
    return { x, key: x.id ?? last + 0.5 };
  });
  return keyed.concat(messages.map((x) => ({ x, key: x.id })))
    .sort((a, b) => a.key - b.key)
    .map(({ x }) => x);
}

// After a reconnect, each room's history replayed on joining again shows only its last
// messages: what was said while the page was away is fetched from where the replay starts,
// page by page, back to the newest message the page had, so that no gap is hidden.
function resume() {
  for (const [key, v] of state.views) {
    if (!key.startsWith('#')) continue;
    // A request sent over the old connection is never answered.
    v.loading = false;
    v.filling = false;
    const ids = v.items.filter((x) => x.id !== undefined).map((x) => x.id);
    v.resumeAfter = ids.length > 0 ? Math.max(...ids) : null;
  }
}

// The newest message id any view holds.
function newestSeen() {
  let newest = -Infinity;
  for (const v of state.views.values()) {
    for (const x of v.items) if (x.id !== undefined && x.id > newest) newest = x.id;
  }
  return newest;
}

// Back on a server with another history (a restarted --db :memory:): the ids the views hold
// name other messages there, and would hide new ones as already shown. What was shown goes.
function forgetHistory() {
  for (const [key, v] of state.views) {
    state.views.set(key, { ...v, items: [], oldest: null, exhausted: false, loading: false, filling: false, resumeAfter: null });
  }
  savePrivatesSoon();
  if (state.current) renderLog(false);
  if (state.current) notice(state.current, 'the server has another history now (restarted without its database?); earlier messages are no longer shown');
}

function fillGap(room, v, messages) {
  if (v.resumeAfter === null) return;
  const first = messages.length > 0 ? messages[0].id : null;
  const met = first === null || first <= v.resumeAfter + 1 || (v.filling && messages.length < GAP_PAGE);
  if (met) {
    v.resumeAfter = null;
    v.filling = false;
  } else if (v.items.length >= MAX_KEPT) {
    // Too much was missed to keep it all: the view starts after the gap, and "load older"
    // pages back through it.
    v.items = v.items.slice(v.items.findIndex((x) => x.id !== undefined && x.id > v.resumeAfter));
    v.oldest = first;
    v.exhausted = false;
    v.resumeAfter = null;
    v.filling = false;
  } else {
    v.filling = send({ type: 'history', room, limit: GAP_PAGE, before: first });
  }
}

// ---- rendering ----------------------------------------------------------------------------

function line(m) {
  const li = document.createElement('li');
  if (m.notice !== undefined) {
    li.className = 'notice';
    li.textContent = m.notice;
    return li;
  }
  const time = document.createElement('time');
  time.className = 'time';
  const when = new Date(m.ts);
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  li.append(time);
  const nick = document.createElement('span');
  nick.className = 'nick';
  nick.textContent = m.kind === 'me' ? `* ${m.nick}` : `<${m.nick}>`;
  li.append(nick);
  const text = document.createElement('span');
  text.className = m.kind === 'me' ? 'text action' : 'text';
  text.textContent = m.text;
  li.append(text);
  if (m.kind === 'private') li.classList.add('private');
  return li;
}

function append(m) {
  const log = $('log');
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  $('messages').append(line(m));
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function renderLog(keepPosition) {
  const log = $('log');
  const fromBottom = log.scrollHeight - log.scrollTop;
  const list = $('messages');
  list.replaceChildren(...(state.current ? view(state.current).items.map(line) : []));
  const v = state.current ? view(state.current) : null;
  $('older').hidden = !state.current || !state.current.startsWith('#') || (v && v.exhausted);
  log.scrollTop = keepPosition ? log.scrollHeight - fromBottom : log.scrollHeight;
}

function show(key) {
  state.current = key;
  if (key) store.setItem('socktalk.current', key);
  if (key) view(key).unread = 0;
  $('title').textContent = key ? (key.startsWith('@') ? `Private: ${key.slice(1)}` : key) : 'No room';
  $('leave').hidden = !key;
  $('text').placeholder = key && key.startsWith('@') ? `Private message to ${key.slice(1)}` : 'Message (/me, /msg, /join, /help…)';
  renderLog(false);
  renderRooms();
  renderMembers();
  if (key && key.startsWith('#')) {
    send({ type: 'who', room: key });
    const v = view(key);
    if (v.items.every((x) => x.id === undefined)) send({ type: 'history', room: key, limit: PAGE });
  }
  closeMenu();
}

function roomButton(key, label, unread) {
  const li = document.createElement('li');
  const button = document.createElement('button');
  button.type = 'button';
  button.textContent = label;
  if (key === state.current) button.setAttribute('aria-current', 'true');
  button.addEventListener('click', () => show(key));
  li.append(button);
  if (unread > 0) {
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.textContent = String(unread);
    badge.setAttribute('aria-label', `${unread} unread`);
    li.append(badge);
  }
  return li;
}

function renderRooms() {
  const counts = new Map(state.allRooms.map((r) => [r.room, r.members]));
  const mine = state.joined.map((room) =>
    roomButton(room, `${room} (${counts.get(room) ?? '?'})`, view(room).unread));
  for (const key of state.views.keys()) {
    if (key.startsWith('@')) mine.push(roomButton(key, `✉ ${key.slice(1)}`, view(key).unread));
  }
  $('rooms').replaceChildren(...mine);
  const others = state.allRooms.filter((r) => !state.joined.includes(r.room)).map((r) => {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = `${r.room} (${r.members})`;
    button.title = `Join ${r.room}`;
    button.addEventListener('click', () => join(r.room));
    li.append(button);
    return li;
  });
  $('all-rooms').replaceChildren(...others);
}

function renderMembers() {
  const nicks = state.current && state.current.startsWith('#') ? state.members.get(state.current) || [] : [];
  $('members').replaceChildren(...nicks.map((nick) => {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = nick === state.nick ? `${nick} (you)` : nick;
    button.title = `Private message to ${nick}`;
    button.disabled = nick === state.nick;
    button.addEventListener('click', () => { view('@' + nick); show('@' + nick); $('text').focus(); });
    li.append(button);
    return li;
  }));
}

function setStatus(text) { $('status').textContent = text; }

let errorTimer = null;
function showError(text, kind = 'error') {
  const box = $('error');
  box.textContent = kind === 'warning' ? `Warning: ${text}` : text;
  box.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { box.hidden = true; }, 8000);
}

// ---- user actions -------------------------------------------------------------------------

$('send-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('text');
  const text = input.value;
  if (!text.trim()) return;
  let ok;
  if (text.startsWith('/')) ok = send({ type: 'line', text });
  else if (state.current && state.current.startsWith('@')) ok = send({ type: 'private', to: state.current.slice(1), text });
  else if (state.current) ok = send({ type: 'say', room: state.current, text });
  else { showError('join a room first'); return; }
  if (ok) input.value = '';
  if (ok) maskIfSecret();
  if (ok && /^\/quit(\s|$)/i.test(text)) state.hasQuit = true;
  const typedJoin = /^\/j(?:oin)?\s+(\S+)\s*$/i.exec(text);
  if (ok && typedJoin) state.showNext = roomName(typedJoin[1]);
});

// A typed /login, /register or /password line holds a password: the box shows it as dots, and
// it is never echoed, kept or stored by the page (only the server's answer is shown).
const SECRET = /^\/(login|identify|register|password|passwd)\s/i;
function maskIfSecret() {
  const input = $('text');
  input.classList.toggle('secret', SECRET.test(input.value));
}
$('text').addEventListener('input', maskIfSecret);

// A room as the server names it: `dev` and `#Dev` are `#dev`.
function roomName(text) {
  const name = text.startsWith('#') ? text : '#' + text;
  return name.toLowerCase();
}

// Joins a room the person asked for, and shows it once the server confirms.
function join(room) {
  const name = roomName(room);
  if (!send({ type: 'join', room: name })) return false;
  state.showNext = name;
  return true;
}

$('join-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('join-room');
  const room = input.value.trim();
  if (!room) return;
  if (join(room)) input.value = '';
});

$('nick-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const nick = $('nick').value.trim();
  // Remembered for reconnects only once the server accepts it (see the 'nick' event).
  if (nick) send({ type: 'nick', nick });
});

$('leave').addEventListener('click', () => {
  const key = state.current;
  if (!key) return;
  if (key.startsWith('#')) {
    send({ type: 'part', room: key });
  } else {
    state.views.delete(key);
    savePrivatesSoon();
    show(state.joined[0] || null);
  }
});

$('older').addEventListener('click', loadOlder);
$('log').addEventListener('scroll', () => { if ($('log').scrollTop === 0) loadOlder(); });

function loadOlder() {
  const key = state.current;
  if (!key || !key.startsWith('#')) return;
  const v = view(key);
  if (v.exhausted || v.loading || v.filling) return;
  v.loading = true;
  send(v.oldest === null ? { type: 'history', room: key, limit: PAGE } : { type: 'history', room: key, limit: PAGE, before: v.oldest });
}

$('menu').addEventListener('click', () => {
  const open = $('side').classList.toggle('open');
  $('menu').setAttribute('aria-expanded', String(open));
});

// On a phone the open panel covers the ☰ button: a tap beside it or Escape closes it.
function closeMenu() {
  $('side').classList.remove('open');
  $('menu').setAttribute('aria-expanded', 'false');
}
document.addEventListener('click', (event) => {
  if ($('side').classList.contains('open') && !$('side').contains(event.target) && !$('menu').contains(event.target)) {
    closeMenu();
  }
});
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && $('side').classList.contains('open')) {
    closeMenu();
    $('menu').focus();
  }
});

// Room sizes change as people come and go in rooms we are not in.
setInterval(() => {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send('{"type":"rooms"}');
}, 15000);

restorePrivates();
connect();
