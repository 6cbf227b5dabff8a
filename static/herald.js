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
 * in a row before the server's first frame (it cannot open, closes, or
 * brings no frame within `connectTimeoutMs`, 10 s), Server-Sent Events
 * (`/events`) the same way, then long-polling (`/poll`).
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
 * Events: "state" (connecting | open | reconnecting | closed, with details
 * and the transport), "transport" (a change of transport), "registered",
 * "subscribed", "unsubscribed", "refreshed", "message", "resumed" (missed
 * messages were delivered), "reset" (they could not be: reload your state),
 * "error" (error frames from the server, and readable error answers to a
 * poll), "close". Works in browsers and, with injected WebSocket,
 * EventSource, fetch and storage, in Node.
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
      // Failures in a row of the current transport before a first frame.
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
        timer: null,
        since: this.position ? this.position.seq : null,
        teardown: () => {},
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
        }
      };
      source.onmessage = (event) => {
        if (this.conn === conn) {
          this.received(conn);
          this.dispatch(event.data);
        }
      };
      source.onerror = () => this.ended(conn, { code: 1006, reason: "the event stream failed" });
      this.scheduleRefresh(token);
    }

    /* Long-polling: one GET after another, each from the position the last
       answer gave, for as long as they succeed. */
    async poll(conn, token) {
      const Abort = globalOf("AbortController");
      const controller = Abort ? new Abort() : null;
      conn.teardown = () => controller && controller.abort();
      this.scheduleRefresh(token);
      while (!conn.ended) {
        const init = { cache: "no-store" };
        if (controller) {
          init.signal = controller.signal;
        }
        let response;
        let answer;
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
          this.received(conn);
          this.attempt = 0;
          this.emit("state", { state: "open", transport: conn.transport });
          this.greet(token);
        }
        try {
          answer = await response.json();
        } catch (e) {
          this.ended(conn, { code: 1006, reason: "the poll answer was cut or unreadable" });
          return;
        }
        if (!conn.ended) {
          this.pollAnswer(conn, answer);
        }
      }
    }

    /* A refused poll: its JSON error (readable from another origin too,
       when that origin is allowed) goes to "error", then the reconnect. */
    async pollRefused(conn, response) {
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
      this.ended(conn, { code: 1006, reason: "the poll was answered " + response.status });
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

    /* `{"messages":[…],"epoch":E,"seq":S}` or a `reset` frame. The first
       answer to a resume stands for `resumed`. */
    pollAnswer(conn, answer) {
      if (answer && answer.type === "reset") {
        this.dispatch(answer);
        return;
      }
      if (!answer || !Array.isArray(answer.messages) || typeof answer.epoch !== "string" ||
          !Number.isSafeInteger(answer.seq)) {
        this.emit("error", { type: "error", error: "unreadable poll answer from server" });
        return;
      }
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

    /* The first frame (or the first good poll answer) of a connection: the
       transport works. */
    received(conn) {
      if (conn.gotFrame) {
        return;
      }
      conn.gotFrame = true;
      if (conn.timer !== null) {
        this.clearTimer(conn.timer);
        conn.timer = null;
      }
      this.failures = 0;
      this.returnIndex = null;
      if (this.index > 0 && this.upgradeAfterMs > 0) {
        this.scheduleUpgrade(conn);
      }
    }

    /* The end of a connection, however it came: `next` says what follows
       (by default, a reconnect after the backoff delay, on the next
       transport when this one keeps failing). */
    ended(conn, info, next) {
      if (conn.ended) {
        return;
      }
      conn.ended = true;
      if (conn.timer !== null) {
        this.clearTimer(conn.timer);
        conn.timer = null;
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
      if (next) {
        next();
        return;
      }
      if (!conn.gotFrame) {
        this.failed();
      }
      this.scheduleReconnect();
    }

    /* A connection ended before its first frame: after `fallbackAfter` in
       a row, the next transport; while trying better ones again, one
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

    /* Asks for a fresh token `refreshLeadMs` before this one expires. Only
       possible when `token` is a function. A WebSocket sends it in a
       `refresh` frame; SSE and polling reconnect with it. */
    scheduleRefresh(token) {
      this.cancelRefresh();
      const exp = tokenExpiry(token);
      if (typeof this.token !== "function" || exp === null) {
        return;
      }
      const delayMs = Math.max(1000, exp * 1000 - Date.now() - this.refreshLeadMs);
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

    scheduleReconnect() {
      const delayMs = backoffDelay(this.attempt, this.backoff, this.random);
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
      if (frame.type !== "error") {
        // The server answered: this connection works, so the next drop
        // starts the backoff from scratch.
        this.attempt = 0;
      }
      switch (frame.type) {
        case "message":
          if (this.position && frame.seq <= this.position.seq) {
            return; // already shown
          }
          if (this.position) {
            this.setPosition(this.position.epoch, frame.seq);
          }
          break;
        case "registered":
        case "subscribed":
        case "connected":
          // A fresh start counts from the server's position; a resume waits
          // for its answer. (Only answers at connect carry the position.)
          if (frame.epoch !== undefined && (!this.resuming || !this.position)) {
            this.setPosition(frame.epoch, frame.seq);
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
