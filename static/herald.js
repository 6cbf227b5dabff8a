/*
 * herald browser client: one WebSocket to herald, registered under an id (or
 * a signed token), subscribed to channels, reconnecting by itself with
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
 * Events: "state" (connecting | open | reconnecting | closed, with details),
 * "registered", "subscribed", "unsubscribed", "refreshed", "message",
 * "resumed" (missed messages were delivered), "reset" (they could not be:
 * reload your state), "error" (error frames from the server), "close".
 * Works in browsers and, with injected WebSocket and storage, in Node.
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

  /* The `exp` claim of a JWT (seconds), or null. Read only to time the
     refresh: the server is the one that verifies tokens. */
  function tokenExpiry(token) {
    try {
      const part = String(token).split(".")[1];
      const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
      const exp = JSON.parse(json).exp;
      return typeof exp === "number" ? exp : null;
    } catch (e) {
      return null;
    }
  }

  function defaultUrl() {
    const loc = self.location;
    const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + loc.host + "/ws";
  }

  function defaultStorage() {
    try {
      return self.localStorage || null;
    } catch (e) {
      return null; // disabled (privacy mode, sandboxed frame)
    }
  }

  class HeraldClient {
    constructor(options) {
      const opts = options || {};
      this.url = opts.url || defaultUrl();
      this.id = opts.id == null ? null : String(opts.id);
      this.token = opts.token || null;
      this.channels = new Set(opts.channels || []);
      this.backoff = Object.assign({}, DEFAULT_BACKOFF, opts.backoff || {});
      this.WebSocketImpl = opts.WebSocket || self.WebSocket;
      this.random = opts.random || Math.random;
      this.setTimer = opts.setTimeout || ((fn, ms) => setTimeout(fn, ms));
      this.clearTimer = opts.clearTimeout || ((t) => clearTimeout(t));
      this.refreshLeadMs = opts.refreshLeadMs || 30000;
      this.storage = opts.storage === undefined ? defaultStorage() : opts.storage;
      this.storageKey =
        opts.storageKey || "herald:" + this.url + ":" + (this.token ? "token" : this.id || "");
      this.position = this.loadPosition();
      this.handlers = {};
      this.socket = null;
      this.attempt = 0;
      this.timer = null;
      this.refreshTimer = null;
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
      if (!this.socket && this.timer === null) {
        this.open();
      }
    }

    /* Registers (or re-registers) under `id`; remembered for reconnects. */
    register(id) {
      this.id = String(id);
      this.send({ type: "register", id: this.id });
    }

    /* Joins a channel now (if connected) and after every reconnect. */
    subscribe(channel) {
      this.channels.add(channel);
      this.send({ type: "subscribe", channel: channel });
    }

    unsubscribe(channel) {
      this.channels.delete(channel);
      this.send({ type: "unsubscribe", channel: channel });
    }

    send(frame) {
      if (this.socket && this.socket.readyState === 1) {
        this.socket.send(JSON.stringify(frame));
        return true;
      }
      return false;
    }

    /* Closes for good: no reconnect. */
    close() {
      this.stopped = true;
      if (this.timer !== null) {
        this.clearTimer(this.timer);
        this.timer = null;
      }
      this.cancelRefresh();
      if (this.socket) {
        this.socket.close(1000);
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

    /* The URL for the next connection. Everything the server should do at
       connect (register, subscribe, resume) happens in one step: from the
       URL, or, with a token, from the first frame (`await_register=1` makes
       the server wait for it), so no live message can come before the
       missed ones. */
    connectUrl() {
      const params = [];
      if (this.token) {
        params.push("await_register=1");
      }
      if (!this.token && this.id !== null) {
        params.push("id=" + encodeURIComponent(this.id));
      }
      for (const channel of this.channels) {
        params.push("channel=" + encodeURIComponent(channel));
      }
      if (!this.token && this.position) {
        params.push("since=" + this.position.seq);
        params.push("epoch=" + encodeURIComponent(this.position.epoch));
      }
      if (params.length === 0) {
        return this.url;
      }
      return this.url + (this.url.indexOf("?") < 0 ? "?" : "&") + params.join("&");
    }

    open() {
      this.emit("state", { state: "connecting", attempt: this.attempt });
      this.resuming = this.position !== null;
      const socket = new this.WebSocketImpl(this.connectUrl());
      this.socket = socket;
      socket.onopen = () => {
        this.emit("state", { state: "open" });
        if (this.token) {
          this.identify(socket);
        }
      };
      socket.onmessage = (event) => this.dispatch(event.data);
      socket.onclose = (event) => {
        if (this.socket !== socket) {
          return;
        }
        this.socket = null;
        this.cancelRefresh();
        this.emit("close", { code: event.code, reason: event.reason });
        if (!this.stopped) {
          this.scheduleReconnect();
        }
      };
      // Errors are followed by close, which does the reconnecting.
      socket.onerror = () => {};
    }

    /* With a token: registers with it (and the position to resume from) as
       the first frame, which a server that requires tokens expects. */
    async identify(socket) {
      let token;
      try {
        token = await this.currentToken();
      } catch (e) {
        this.emit("error", { type: "error", error: "could not get a token: " + e });
        socket.close(1000);
        return;
      }
      if (this.socket !== socket) {
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
       possible when `token` is a function. */
    scheduleRefresh(token) {
      this.cancelRefresh();
      const exp = tokenExpiry(token);
      if (typeof this.token !== "function" || exp === null) {
        return;
      }
      const delayMs = Math.max(1000, exp * 1000 - Date.now() - this.refreshLeadMs);
      this.refreshTimer = this.setTimer(async () => {
        this.refreshTimer = null;
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
      this.emit("state", { state: "reconnecting", delayMs: delayMs, attempt: this.attempt });
      this.timer = this.setTimer(() => {
        this.timer = null;
        if (!this.stopped) {
          this.open();
        }
      }, delayMs);
    }

    dispatch(text) {
      let frame;
      try {
        frame = JSON.parse(text);
      } catch (e) {
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

  return { HeraldClient: HeraldClient, backoffDelay: backoffDelay };
});
