/*
 * herald browser client: one connection to herald, registered under an id
 * (or a signed token), subscribed to channels, reconnecting by itself with
 * capped, jittered exponential backoff, and resuming where it left off: it
 * keeps its position (epoch, seq) in localStorage, so after a reconnect or a
 * page load it receives every message it missed, once, in order.
 *
 *   const client = new HeraldClient({ id: "63", channels: ["news"] });
 *   client.on("message", (frame) => console.log(frame.data));
 *   client.on("reset", () => reloadAppState());
 *   client.connect();
 *
 * With signed identity, pass `token`: a string, or a function returning a
 * token (or a promise of one) that is called on every (re)connect and again
 * shortly before the token expires, to refresh it.
 *
 * Transports: a WebSocket first; when it fails `fallbackAfter` (2) times
 * in a row (it cannot open, closes or brings no frame within
 * `connectTimeoutMs`, 10 s, or drops again before it made progress),
 * Server-Sent Events (`/events`) the same way, then long-polling (`/poll`).
 * `transports: ["websocket", "sse", "poll"]` sets the order, or leaves some
 * out. Each connection resumes from the
 * client's position, whatever carried the one before, so a switch loses
 * nothing and repeats nothing. On a fallback, the WebSocket (the first of
 * the list) is tried again `upgradeAfterMs` (60 s) after the fallback began
 * to work, and again after each such wait while it still fails.
 * `client.transport` names the transport in use; the "transport" event
 * tells each change. Over SSE and polling the client only listens:
 * register/subscribe/unsubscribe reconnect with the new URL.
 *
 * Progress: the reconnect backoff starts again from its first step only
 * when a connection made progress: it delivered a message (the position
 * moved on), or it stayed up `STABLE_AFTER_MS` (10 s; a poll: herald
 * held it a second or more, waiting for a message). A connection that
 * ends without progress counts as a failure: the next waits longer, and
 * `fallbackAfter` of them in a row move to the next transport. A poll
 * answered at once without moving the position (a `reset`, an empty
 * answer a cache replays) is followed by a backoff step, not a new poll at
 * once; an unreadable poll answer is a failure; a refused poll's
 * `Retry-After` is the least the next attempt waits. An event stream from
 * which nothing (message or ping) arrives for 3 heartbeats
 * (`heartbeatIntervalMs`, 5 s, until the stream names its own) and a poll
 * unanswered after `pollTimeoutMs` (25 s) plus 3 heartbeats are given up
 * and reconnected from the position. (The event stream is watched from
 * herald's first ping, which comes at its opening.)
 *
 * Events: "state" (connecting | open | reconnecting | closed, with details
 * and the transport), "transport" (a change of transport), "registered",
 * "subscribed", "unsubscribed", "refreshed", "message", "resumed" (missed
 * messages were delivered), "reset" (they could not be: reload your state),
 * "error" (error frames from the server, and readable error answers to a
 * poll), "close". Works in browsers and, with injected WebSocket,
 * EventSource, fetch and storage (and setTimeout, clearTimeout, now and
 * random for tests), in Node.
 */
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.HeraldClient = api.HeraldClient;
    root.heraldBackoffDelay = api.backoffDelay;
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 30000 };

  /* A connection up this long (from its first frame) worked, messages or
     not: its end starts the backoff again from the first step. */
  const STABLE_AFTER_MS = 10000;

  /* A poll herald held this long was waiting for a message (up to its
     `poll_timeout_secs`): a real long-poll, even if it brought none. A
     cache or a portal answers at once. */
  const HELD_POLL_MS = 1000;

  /* Heartbeats without a word (message or ping) after which an event
     stream, or a poll past the server's poll timeout, is stalled. */
  const STALL_HEARTBEATS = 3;

  /* The shortest heartbeat an event stream's ping may announce; shorter
     ones count as this, so a stall is never declared sooner than 3 s. */
  const MIN_HEARTBEAT_MS = 1000;

  /* The longest `Retry-After` honoured: a proxy's wild value waits this. */
  const MAX_RETRY_AFTER_MS = 5 * 60 * 1000;

  /* Token refreshes are never closer together than this. */
  const MIN_REFRESH_DELAY_MS = 1000;

  /* Every transport, in the default order of preference. */
  const TRANSPORTS = ["websocket", "sse", "poll"];

  /*
   * Delay before reconnect attempt number `attempt` (0-based): exponential,
   * capped at maxMs, with "equal jitter" — a random point in the upper half of
   * the window, so clients dropped together do not come back together.
   */
  function backoffDelay(attempt, backoff, random) {
    const opts = Object.assign({}, DEFAULT_BACKOFF, backoff || {});
    const rand = random || Math.random;
    const window = Math.min(opts.maxMs, opts.initialMs * Math.pow(2, Math.min(attempt, 30)));
    return Math.floor(window / 2 + rand() * (window / 2));
  }

  /* The `transports` option: a non-empty list of known names, each once. */
  function parseTransports(value) {
    if (value === undefined) {
      return TRANSPORTS.slice();
    }
    const known = TRANSPORTS.map((t) => '"' + t + '"').join(", ");
    if (!Array.isArray(value) || value.length === 0) {
      throw new TypeError("transports must be a non-empty list of " + known);
    }
    const seen = new Set();
    for (const name of value) {
      if (TRANSPORTS.indexOf(name) < 0) {
        throw new TypeError("unknown transport " + JSON.stringify(name) + ": use " + known);
      }
      if (seen.has(name)) {
        throw new TypeError("transport " + JSON.stringify(name) + " is listed twice");
      }
      seen.add(name);
    }
    return value.slice();
  }

  /* A count option: an integer of at least `min`, or the default. */
  function countOption(opts, name, fallback, min) {
    const value = opts[name];
    if (value === undefined) {
      return fallback;
    }
    if (!Number.isSafeInteger(value) || value < min) {
      throw new TypeError(name + " must be an integer of at least " + min);
    }
    return value;
  }

  /* A `Retry-After` value in ms (0 when absent or unreadable): delay
     seconds, or an HTTP date; at most MAX_RETRY_AFTER_MS. The two forms
     of RFC 9110 need no library: digits, or what Date.parse reads. */
  function retryAfterMs(value, nowMs) {
    if (typeof value !== "string") {
      return 0;
    }
    const text = value.trim();
    let ms = 0;
    if (/^[0-9]+$/.test(text)) {
      ms = Number(text) * 1000;
    } else {
      const date = Date.parse(text);
      ms = Number.isNaN(date) ? 0 : date - nowMs;
    }
    return Math.min(Math.max(0, ms), MAX_RETRY_AFTER_MS);
  }

  /* Whether a poll's answer is one herald gives: `{"messages":[…],
     "epoch":E,"seq":S}`, or a `reset` frame with its position. */
  function readablePollAnswer(answer) {
    if (answer === null || typeof answer !== "object") {
      return false;
    }
    const position = typeof answer.epoch === "string" && Number.isSafeInteger(answer.seq);
    return position && (answer.type === "reset" || Array.isArray(answer.messages));
  }

  /* The claims of a JWT, or null. Read only to time the refresh and to
     name the id over polling: the server is the one that verifies tokens. */
  function tokenClaims(token) {
    try {
      const part = String(token).split(".")[1];
      const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
      const claims = JSON.parse(json);
      return claims !== null && typeof claims === "object" ? claims : null;
    } catch (e) {
      return null;
    }
  }

  function tokenExpiry(token) {
    const claims = tokenClaims(token);
    return claims && typeof claims.exp === "number" ? claims.exp : null;
  }

  function pageUrl() {
    return typeof self !== "undefined" && self.location ? self.location.href : undefined;
  }

  function defaultUrl() {
    const loc = self.location;
    const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + loc.host + "/ws";
  }

  /* herald's other endpoints beside its WebSocket URL: ws(s)://host/ws
     gives http(s)://host/events and http(s)://host/poll. */
  function siblingUrl(wsUrl, path) {
    const url = new URL(wsUrl, pageUrl());
    if (url.protocol === "ws:") {
      url.protocol = "http:";
    } else if (url.protocol === "wss:") {
      url.protocol = "https:";
    }
    url.pathname = url.pathname.replace(/\/ws\/?$/, "").replace(/\/$/, "") + path;
    return url.toString();
  }

  function defaultStorage() {
    try {
      return self.localStorage || null;
    } catch (e) {
      return null; // disabled (privacy mode, sandboxed frame)
    }
  }

  function globalOf(name) {
    return typeof globalThis !== "undefined" ? globalThis[name] : undefined;
  }

  class HeraldClient {
    constructor(options) {
      const opts = options || {};
      this.url = opts.url || defaultUrl();
      this.eventsUrl = opts.eventsUrl || siblingUrl(this.url, "/events");
      this.pollUrl = opts.pollUrl || siblingUrl(this.url, "/poll");
      this.id = opts.id == null ? null : String(opts.id);
      this.token = opts.token || null;
      this.channels = new Set(opts.channels || []);
      this.backoff = Object.assign({}, DEFAULT_BACKOFF, opts.backoff || {});
      this.WebSocketImpl = opts.WebSocket || globalOf("WebSocket");
      this.EventSourceImpl = opts.EventSource || globalOf("EventSource");
      const fetchImpl = opts.fetch || globalOf("fetch");
      this.fetchImpl = fetchImpl ? (url, init) => fetchImpl(url, init) : null;
      // The transports this environment has, in the order asked for.
      const available = { websocket: this.WebSocketImpl, sse: this.EventSourceImpl, poll: this.fetchImpl };
      this.transports = parseTransports(opts.transports).filter((t) => available[t]);
      if (this.transports.length === 0) {
        throw new TypeError("none of the transports asked for is available here");
      }
      this.fallbackAfter = countOption(opts, "fallbackAfter", 2, 1);
      this.connectTimeoutMs = countOption(opts, "connectTimeoutMs", 10000, 0);
      this.upgradeAfterMs = countOption(opts, "upgradeAfterMs", 60000, 0);
      this.random = opts.random || Math.random;
      this.setTimer = opts.setTimeout || ((fn, ms) => setTimeout(fn, ms));
      this.clearTimer = opts.clearTimeout || ((t) => clearTimeout(t));
      this.heartbeatIntervalMs = countOption(opts, "heartbeatIntervalMs", 5000, 1);
      this.pollTimeoutMs = countOption(opts, "pollTimeoutMs", 25000, 0);
      this.now = opts.now || (() => Date.now());
      this.refreshLeadMs = opts.refreshLeadMs || 30000;
      this.storage = opts.storage === undefined ? defaultStorage() : opts.storage;
      this.storageKey =
        opts.storageKey || "herald:" + this.url + ":" + (this.token ? "token" : this.id || "");
      this.position = this.loadPosition();
      this.handlers = {};
      // The connection in use or being opened: { transport, gotFrame, ... }.
      this.conn = null;
      // Index in `transports` of the transport in use or to try next.
      this.index = 0;
      this.transport = this.transports[0];
      // Connections in a row of the current transport that ended without
      // progress (see `progressed`).
      this.failures = 0;
      // While trying better transports again: the index to come back to.
      this.returnIndex = null;
      this.attempt = 0;
      this.timer = null;
      this.refreshTimer = null;
      this.upgradeTimer = null;
      this.stopped = false;
    }

    on(event, handler) {
      (this.handlers[event] = this.handlers[event] || []).push(handler);
      return this;
    }

    emit(event, payload) {
      for (const handler of this.handlers[event] || []) {
        handler(payload);
      }
    }

    /* Opens the connection; after a drop it reconnects until close(). */
    connect() {
      this.stopped = false;
      if (!this.conn && this.timer === null) {
        this.open();
      }
    }

    /* Registers (or re-registers) under `id`; remembered for reconnects. */
    register(id) {
      this.id = String(id);
      this.sendOrReconnect({ type: "register", id: this.id });
    }

    /* Joins a channel now (if connected) and after every reconnect. */
    subscribe(channel) {
      this.channels.add(channel);
      this.sendOrReconnect({ type: "subscribe", channel: channel });
    }

    unsubscribe(channel) {
      this.channels.delete(channel);
      this.sendOrReconnect({ type: "unsubscribe", channel: channel });
    }

    send(frame) {
      if (this.conn && this.conn.send) {
        return this.conn.send(JSON.stringify(frame));
      }
      return false;
    }

    /* A WebSocket takes the frame; SSE and polling only listen, so they
       reconnect at once with the new URL (from the same position). */
    sendOrReconnect(frame) {
      const conn = this.conn;
      if (conn && conn.transport !== "websocket") {
        this.ended(conn, { code: 1000, reason: "reconnecting with new subscriptions" }, () => this.open());
      } else {
        this.send(frame);
      }
    }

    /* Closes for good: no reconnect. */
    close() {
      this.stopped = true;
      if (this.timer !== null) {
        this.clearTimer(this.timer);
        this.timer = null;
      }
      this.cancelRefresh();
      this.cancelUpgrade();
      if (this.conn) {
        this.ended(this.conn, { code: 1000, reason: "" });
      }
      this.emit("state", { state: "closed" });
    }

    loadPosition() {
      try {
        const saved = this.storage && JSON.parse(this.storage.getItem(this.storageKey));
        if (saved && typeof saved.epoch === "string" && Number.isSafeInteger(saved.seq)) {
          return saved;
        }
      } catch (e) {
        // Unreadable: start without a position.
      }
      return null;
    }

    setPosition(epoch, seq) {
      this.position = { epoch: epoch, seq: seq };
      try {
        if (this.storage) {
          this.storage.setItem(this.storageKey, JSON.stringify(this.position));
        }
      } catch (e) {
        // Storage full or disabled: the position lives in memory only.
      }
    }

    /* The URL for the next connection over `transport` (default: the
       WebSocket). Everything the server should do at connect (register,
       subscribe, resume) happens in one step: from the URL, or, with a
       token over a WebSocket, from the first frame (`await_register=1`
       makes the server wait for it), so no live message can come before
       the missed ones. SSE and polling cannot send frames: a token goes in
       their URL. */
    connectUrl(transport, token) {
      const kind = transport || "websocket";
      const base = kind === "sse" ? this.eventsUrl : kind === "poll" ? this.pollUrl : this.url;
      const framed = kind === "websocket" && this.token;
      const params = [];
      if (framed) {
        params.push("await_register=1");
      } else if (this.token) {
        params.push("token=" + encodeURIComponent(token));
      }
      if (!this.token && this.id !== null) {
        params.push("id=" + encodeURIComponent(this.id));
      }
      for (const channel of this.channels) {
        params.push("channel=" + encodeURIComponent(channel));
      }
      if (!framed && this.position) {
        params.push("since=" + this.position.seq);
        params.push("epoch=" + encodeURIComponent(this.position.epoch));
      }
      if (params.length === 0) {
        return base;
      }
      return base + (base.indexOf("?") < 0 ? "?" : "&") + params.join("&");
    }

    open() {
      const transport = this.transports[this.index];
      this.transport = transport;
      this.emit("state", { state: "connecting", attempt: this.attempt, transport: transport });
      this.resuming = this.position !== null;
      const conn = {
        transport: transport,
        gotFrame: false,
        ended: false,
        // The connect timeout, until the first frame.
        timer: null,
        since: this.position ? this.position.seq : null,
        teardown: () => {},
        // Whether it made progress (see `progressed`).
        progressed: false,
        // When its first frame came, and when anything last came (an
        // event stream's pings included).
        frameAt: null,
        heardAt: this.now(),
        // An event stream's heartbeat: herald.js's guess until a ping
        // names the server's.
        heartbeatMs: this.heartbeatIntervalMs,
        // The stall watchdog (event stream, or the poll in flight), and
        // whether an event stream's has started.
        watchdog: null,
        watched: false,
        // A poll's wait between two answers, and what ends it early.
        pause: null,
        wake: null,
      };
      this.conn = conn;
      // A poll may wait for its answer up to the server's poll timeout (a
      // buffering proxy may hold back even its headers until then): only
      // a failed request counts against it.
      if (this.connectTimeoutMs > 0 && transport !== "poll") {
        conn.timer = this.setTimer(() => {
          conn.timer = null;
          const reason = "no answer within " + this.connectTimeoutMs + " ms";
          this.ended(conn, { code: 1006, reason: reason });
        }, this.connectTimeoutMs);
      }
      if (transport === "websocket") {
        this.openWebSocket(conn);
      } else if (transport === "sse") {
        this.withToken(conn, (token) => this.openEventSource(conn, token));
      } else {
        this.withToken(conn, (token) => this.poll(conn, token));
      }
    }

    openWebSocket(conn) {
      const socket = new this.WebSocketImpl(this.connectUrl("websocket"));
      conn.socket = socket;
      conn.send = (text) => {
        if (socket.readyState === 1) {
          socket.send(text);
          return true;
        }
        return false;
      };
      conn.teardown = () => {
        if (socket.readyState < 2) {
          socket.close(1000);
        }
      };
      socket.onopen = () => {
        if (this.conn !== conn) {
          return;
        }
        this.emit("state", { state: "open", transport: conn.transport });
        if (this.token) {
          this.identify(conn);
        }
      };
      socket.onmessage = (event) => {
        if (this.conn === conn) {
          this.received(conn);
          this.dispatch(event.data);
        }
      };
      socket.onclose = (event) => this.ended(conn, { code: event.code, reason: event.reason });
      // Errors are followed by close, which does the reconnecting.
      socket.onerror = () => {};
    }

    /* An EventSource whose reconnects are herald.js's own: on any error it
       is closed, and the next connection (with the same backoff as the
       others) resumes from the client's position. */
    openEventSource(conn, token) {
      const source = new this.EventSourceImpl(this.connectUrl("sse", token));
      conn.teardown = () => source.close();
      source.onopen = () => {
        if (this.conn === conn) {
          this.emit("state", { state: "open", transport: conn.transport });
          conn.heardAt = this.now();
        }
      };
      source.onmessage = (event) => {
        if (this.conn === conn) {
          conn.heardAt = this.now();
          this.received(conn);
          this.dispatch(event.data);
        }
      };
      // herald's keep-alive: an event named `ping` (which `onmessage` does
      // not see), `{"heartbeat_interval_ms":N}`, at the opening and every
      // heartbeat. The first one starts the stall watchdog: a server that
      // sends none (an older herald) is not watched, rather than left
      // every few seconds. (An injected EventSource without listeners is
      // not watched either.)
      if (typeof source.addEventListener === "function") {
        source.addEventListener("ping", (event) => {
          if (this.conn === conn) {
            conn.heardAt = this.now();
            this.learnHeartbeat(conn, event.data);
            if (!conn.watched) {
              conn.watched = true;
              this.watchStream(conn);
            }
          }
        });
      }
      source.onerror = () => this.ended(conn, { code: 1006, reason: "the event stream failed" });
      this.scheduleRefresh(token);
    }

    /* Takes the heartbeat a ping names (at least MIN_HEARTBEAT_MS); an
       unreadable ping still counts as something heard. */
    learnHeartbeat(conn, data) {
      try {
        const ms = JSON.parse(data).heartbeat_interval_ms;
        if (Number.isSafeInteger(ms) && ms > 0) {
          conn.heartbeatMs = Math.max(MIN_HEARTBEAT_MS, ms);
        }
      } catch (e) {
        // Not JSON: keep the heartbeat as it was.
      }
    }

    /* From an event stream's first ping on: when nothing (message or ping)
       came for STALL_HEARTBEATS heartbeats, the path stalled (a proxy
       that holds the connection open but passes nothing): it is closed,
       and the next connection resumes from the position. */
    watchStream(conn) {
      const check = () => {
        conn.watchdog = null;
        if (conn.ended) {
          return;
        }
        const limitMs = STALL_HEARTBEATS * conn.heartbeatMs;
        const silentMs = this.now() - conn.heardAt;
        if (silentMs >= limitMs) {
          this.ended(conn, { code: 1006, reason: "nothing from the server for " + silentMs + " ms" });
        } else {
          conn.watchdog = this.setTimer(check, limitMs - silentMs);
        }
      };
      this.clearWatchdog(conn);
      conn.watchdog = this.setTimer(check, STALL_HEARTBEATS * conn.heartbeatMs);
    }

    clearWatchdog(conn) {
      if (conn.watchdog !== null) {
        this.clearTimer(conn.watchdog);
        conn.watchdog = null;
      }
    }

    /* Long-polling: one GET after another, each from the position the last
       answer gave. A poll that moved the position on, or that the server
       held HELD_POLL_MS or more (it waits for a message), is followed by
       the next at once; one answered at once without moving it (a `reset`, an empty
       answer a cache replays) by a backoff step first. A poll unanswered
       `pollTimeoutMs` plus 3 heartbeats after it was sent, or answered
       with something unreadable, is a failure. */
    async poll(conn, token) {
      const Abort = globalOf("AbortController");
      const controller = Abort ? new Abort() : null;
      conn.teardown = () => controller && controller.abort();
      this.scheduleRefresh(token);
      const limitMs = this.pollTimeoutMs + STALL_HEARTBEATS * this.heartbeatIntervalMs;
      while (!conn.ended) {
        const init = { cache: "no-store" };
        if (controller) {
          init.signal = controller.signal;
        }
        const sentAt = this.now();
        conn.watchdog = this.setTimer(() => {
          conn.watchdog = null;
          const reason = "no answer to the poll within " + limitMs + " ms";
          this.ended(conn, { code: 1006, reason: reason, failure: true });
        }, limitMs);
        let response;
        try {
          response = await this.fetchImpl(this.connectUrl("poll", token), init);
        } catch (e) {
          this.ended(conn, { code: 1006, reason: "the poll failed: " + e });
          return;
        }
        if (conn.ended) {
          return;
        }
        if (!response.ok) {
          await this.pollRefused(conn, response);
          return;
        }
        if (!conn.gotFrame) {
          // Accepted: herald may now hold the answer until a message comes.
          this.received(conn);
          this.emit("state", { state: "open", transport: conn.transport });
          this.greet(token);
        }
        let answer;
        try {
          answer = await response.json();
        } catch (e) {
          this.ended(conn, { code: 1006, reason: "the poll answer was cut or unreadable", failure: true });
          return;
        }
        if (conn.ended) {
          return;
        }
        this.clearWatchdog(conn);
        if (!readablePollAnswer(answer)) {
          this.emit("error", { type: "error", error: "unreadable poll answer from server" });
          this.ended(conn, { code: 1006, reason: "the poll answer was unreadable", failure: true });
          return;
        }
        const moved = this.pollAnswer(conn, answer);
        if (conn.ended) {
          return; // a handler closed or reconnected
        }
        if (moved || this.now() - sentAt >= HELD_POLL_MS) {
          this.progressed(conn);
        } else {
          await this.pause(conn);
        }
      }
    }

    /* Waits one backoff step within a poll connection (ended early by its
       end). */
    pause(conn) {
      const delayMs = backoffDelay(this.attempt, this.backoff, this.random);
      this.attempt += 1;
      return new Promise((resolve) => {
        conn.wake = resolve;
        conn.pause = this.setTimer(() => {
          conn.pause = null;
          conn.wake = null;
          resolve();
        }, delayMs);
      });
    }

    /* A refused poll: its JSON error (readable from another origin too,
       when that origin is allowed) goes to "error", then the reconnect,
       no sooner than its `Retry-After`. */
    async pollRefused(conn, response) {
      const headers = response.headers;
      const retryAfter = headers && typeof headers.get === "function" ? headers.get("Retry-After") : null;
      let body = null;
      try {
        body = await response.json();
      } catch (e) {
        // No JSON: the status says it all.
      }
      if (conn.ended) {
        return;
      }
      if (body && typeof body.error === "string") {
        this.emit("error", { type: "error", error: body.error, code: body.code, status: response.status });
      }
      this.ended(conn, {
        code: 1006,
        reason: "the poll was answered " + response.status,
        retryAfterMs: retryAfterMs(retryAfter, this.now()),
      });
    }

    /* What a WebSocket or an event stream would have said at connect:
       polls carry only messages, so their first success stands for
       `registered` and `subscribed`. */
    greet(token) {
      const claims = this.token ? tokenClaims(token) : null;
      const id = claims ? claims.sub : this.id;
      if (id != null) {
        this.dispatch({ type: "registered", id: String(id) });
      }
      for (const channel of this.channels) {
        this.dispatch({ type: "subscribed", channel: channel });
      }
    }

    /* `{"messages":[…],"epoch":E,"seq":S}` or a `reset` frame (checked by
       `readablePollAnswer`). The first answer to a resume stands for
       `resumed`. Says whether the position moved on: a message shown, or
       a later seq in the same epoch (or a first position). A `reset` is
       not progress: taking its position, the client has received nothing. */
    pollAnswer(conn, answer) {
      if (answer.type === "reset") {
        this.dispatch(answer);
        return false;
      }
      const before = this.position;
      for (const frame of answer.messages) {
        this.dispatch(frame);
      }
      if (this.resuming) {
        this.dispatch({
          type: "resumed",
          since: conn.since,
          count: answer.messages.length,
          epoch: answer.epoch,
          seq: answer.seq,
        });
      } else {
        const same = this.position && this.position.epoch === answer.epoch;
        this.setPosition(answer.epoch, same ? Math.max(answer.seq, this.position.seq) : answer.seq);
      }
      const after = this.position;
      return after !== null && (before === null || (before.epoch === after.epoch && after.seq > before.seq));
    }

    /* Runs `then(token)` once the token for this connection is known (at
       once without one). */
    withToken(conn, then) {
      if (!this.token) {
        then(null);
        return;
      }
      this.currentToken().then(
        (token) => {
          if (!conn.ended) {
            then(token);
          }
        },
        (e) => {
          if (!conn.ended) {
            this.emit("error", { type: "error", error: "could not get a token: " + e });
            // Not the transport's fault: no fallback for it.
            this.ended(conn, { code: 1000, reason: "no token" }, () => this.scheduleReconnect());
          }
        }
      );
    }

    /* The first frame (or the first poll accepted) of a connection: it
       opened. Whether it works is for `progressed`. */
    received(conn) {
      if (conn.gotFrame) {
        return;
      }
      conn.gotFrame = true;
      conn.frameAt = this.now();
      if (conn.timer !== null) {
        this.clearTimer(conn.timer);
        conn.timer = null;
      }
      if (this.index > 0 && this.upgradeAfterMs > 0) {
        this.scheduleUpgrade(conn);
      }
    }

    /* The connection works: it delivered a message or moved the position
       on, or stayed up STABLE_AFTER_MS. The backoff starts again from its
       first step, the failures in a row are forgotten, and a transport
       being tried again is kept. */
    progressed(conn) {
      conn.progressed = true;
      this.attempt = 0;
      this.failures = 0;
      this.returnIndex = null;
    }

    /* Whether a WebSocket or an event stream stayed up STABLE_AFTER_MS
       from its first frame: an event stream until the last thing it
       brought (a stalled one was not up while silent), a WebSocket until
       now (its pings are not visible here). Polls count per answer. */
    stayedUp(conn) {
      if (conn.frameAt === null || conn.transport === "poll") {
        return false;
      }
      const until = conn.transport === "sse" ? conn.heardAt : this.now();
      return until - conn.frameAt >= STABLE_AFTER_MS;
    }

    /* The end of a connection, however it came: `next` says what follows
       (by default, a reconnect after the backoff delay, no sooner than
       `info.retryAfterMs`, on the next transport when this one keeps
       failing). A connection that made no progress is a failure, and so is
       one that ended with `info.failure` (a stalled or unreadable poll). */
    ended(conn, info, next) {
      if (conn.ended) {
        return;
      }
      conn.ended = true;
      if (conn.timer !== null) {
        this.clearTimer(conn.timer);
        conn.timer = null;
      }
      this.clearWatchdog(conn);
      if (conn.pause !== null) {
        this.clearTimer(conn.pause);
        conn.pause = null;
      }
      if (conn.wake !== null) {
        conn.wake();
        conn.wake = null;
      }
      conn.teardown();
      if (this.conn !== conn) {
        return;
      }
      this.conn = null;
      this.cancelRefresh();
      this.cancelUpgrade();
      this.emit("close", { code: info.code, reason: info.reason, transport: conn.transport });
      if (this.stopped) {
        return;
      }
      if (!conn.progressed && this.stayedUp(conn)) {
        this.progressed(conn);
      }
      if (next) {
        next();
        return;
      }
      if (info.failure || !conn.progressed) {
        this.failed();
      }
      this.scheduleReconnect(info.retryAfterMs || 0);
    }

    /* A connection ended without progress: after `fallbackAfter` in a
       row, the next transport; while trying better ones again, one
       attempt each, then back to the one that worked. */
    failed() {
      this.failures += 1;
      if (this.returnIndex !== null) {
        const next = this.index + 1;
        if (next >= this.returnIndex) {
          const back = this.returnIndex;
          this.returnIndex = null;
          this.switchTo(back, "return");
        } else {
          this.switchTo(next, "upgrade");
        }
      } else if (this.failures >= this.fallbackAfter && this.index + 1 < this.transports.length) {
        this.switchTo(this.index + 1, "fallback");
      }
    }

    switchTo(index, reason) {
      const previous = this.transports[this.index];
      this.index = index;
      this.failures = 0;
      this.transport = this.transports[index];
      if (this.transport !== previous) {
        this.emit("transport", { transport: this.transport, previous: previous, reason: reason });
      }
    }

    /* On a fallback that works, the better transports are tried again
       after about `upgradeAfterMs`: the connection closes, and the next
       one resumes from the position over the first of the list. */
    scheduleUpgrade(conn) {
      this.cancelUpgrade();
      const delayMs = Math.floor(this.upgradeAfterMs * (0.75 + this.random() / 2));
      this.upgradeTimer = this.setTimer(() => {
        this.upgradeTimer = null;
        if (this.conn !== conn || this.stopped) {
          return;
        }
        const back = this.index;
        const reason = "trying " + this.transports[0] + " again";
        this.ended(conn, { code: 1000, reason: reason }, () => {
          this.switchTo(0, "upgrade");
          this.returnIndex = back;
          this.open();
        });
      }, delayMs);
    }

    cancelUpgrade() {
      if (this.upgradeTimer !== null) {
        this.clearTimer(this.upgradeTimer);
        this.upgradeTimer = null;
      }
    }

    /* With a token over a WebSocket: registers with it (and the position to
       resume from) as the first frame, which a server that requires tokens
       expects. */
    async identify(conn) {
      let token;
      try {
        token = await this.currentToken();
      } catch (e) {
        this.emit("error", { type: "error", error: "could not get a token: " + e });
        this.ended(conn, { code: 1000, reason: "no token" }, () => this.scheduleReconnect());
        return;
      }
      if (this.conn !== conn) {
        return;
      }
      const frame = { type: "register", token: token };
      if (this.position) {
        frame.since = this.position.seq;
        frame.epoch = this.position.epoch;
      }
      this.send(frame);
      this.scheduleRefresh(token);
    }

    currentToken() {
      return Promise.resolve(typeof this.token === "function" ? this.token() : this.token);
    }

    /* Asks for a fresh token `refreshLeadMs` before this one expires, or
       halfway through its remaining lifetime if that is sooner (a 20-s
       token is refreshed after 10 s), never sooner than
       MIN_REFRESH_DELAY_MS. Only possible when `token` is a function. A
       WebSocket sends it in a `refresh` frame; SSE and polling reconnect
       with it. */
    scheduleRefresh(token) {
      this.cancelRefresh();
      const exp = tokenExpiry(token);
      if (typeof this.token !== "function" || exp === null) {
        return;
      }
      const leftMs = exp * 1000 - this.now();
      const leadMs = Math.min(this.refreshLeadMs, leftMs / 2);
      const delayMs = Math.max(MIN_REFRESH_DELAY_MS, Math.floor(leftMs - leadMs));
      this.refreshTimer = this.setTimer(async () => {
        this.refreshTimer = null;
        const conn = this.conn;
        if (conn && conn.transport !== "websocket") {
          this.ended(conn, { code: 1000, reason: "refreshing the token" }, () => this.open());
          return;
        }
        try {
          const fresh = await this.currentToken();
          if (this.send({ type: "refresh", token: fresh })) {
            this.scheduleRefresh(fresh);
          }
        } catch (e) {
          this.emit("error", { type: "error", error: "could not refresh the token: " + e });
        }
      }, delayMs);
    }

    cancelRefresh() {
      if (this.refreshTimer !== null) {
        this.clearTimer(this.refreshTimer);
        this.refreshTimer = null;
      }
    }

    /* The next connection, after the backoff step and no sooner than
       `minDelayMs` (a `Retry-After`, plus up to a quarter more at random, so
       that the clients it sent away do not all come back at once). */
    scheduleReconnect(minDelayMs) {
      let delayMs = backoffDelay(this.attempt, this.backoff, this.random);
      if (minDelayMs > 0) {
        delayMs = Math.max(delayMs, minDelayMs + Math.floor((this.random() * minDelayMs) / 4));
      }
      this.attempt += 1;
      this.emit("state", {
        state: "reconnecting",
        delayMs: delayMs,
        attempt: this.attempt,
        transport: this.transport,
      });
      this.timer = this.setTimer(() => {
        this.timer = null;
        if (!this.stopped) {
          this.open();
        }
      }, delayMs);
    }

    /* One frame from the server: JSON text (WebSocket, SSE) or an object
       (a poll answer's messages, and what polls stand for). */
    dispatch(data) {
      let frame = data;
      if (typeof data === "string") {
        try {
          frame = JSON.parse(data);
        } catch (e) {
          this.emit("error", { type: "error", error: "unreadable frame from server" });
          return;
        }
      }
      if (frame === null || typeof frame !== "object") {
        this.emit("error", { type: "error", error: "unreadable frame from server" });
        return;
      }
      switch (frame.type) {
        case "message":
          if (this.position && frame.seq <= this.position.seq) {
            return; // already shown
          }
          if (this.position) {
            this.setPosition(this.position.epoch, frame.seq);
          }
          if (this.conn) {
            this.progressed(this.conn);
          }
          break;
        case "registered":
        case "subscribed":
        case "connected":
          // A fresh start counts from the server's position; a resume waits
          // for its answer. (Only answers at connect carry the position.)
          // Within an epoch a position never moves back: a later answer
          // may carry a position below messages already shown.
          if (frame.epoch !== undefined && (!this.resuming || !this.position)) {
            const same = this.position && this.position.epoch === frame.epoch;
            this.setPosition(frame.epoch, same ? Math.max(frame.seq, this.position.seq) : frame.seq);
          }
          break;
        case "resumed":
          this.resuming = false;
          this.setPosition(frame.epoch, Math.max(frame.seq, this.position ? this.position.seq : 0));
          break;
        case "reset":
          this.resuming = false;
          this.setPosition(frame.epoch, frame.seq);
          break;
      }
      this.emit(frame.type, frame);
    }
  }

  return {
    HeraldClient: HeraldClient,
    backoffDelay: backoffDelay,
    parseTransports: parseTransports,
    TRANSPORTS: TRANSPORTS,
  };
});
