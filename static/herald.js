/*
 * herald browser client: one WebSocket to herald, registered under an id,
 * reconnecting by itself with capped, jittered exponential backoff.
 *
 *   const client = new HeraldClient({ id: "63" });
 *   client.on("message", (frame) => console.log(frame.data));
 *   client.connect();
 *
 * Events: "state" (connecting | open | reconnecting | closed, with details),
 * "registered", "message", "error" (error frames from the server), "close".
 * Works in browsers and, with an injected WebSocket, in Node (tests).
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

  function defaultUrl() {
    const loc = self.location;
    const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + loc.host + "/ws";
  }

  class HeraldClient {
    constructor(options) {
      const opts = options || {};
      this.url = opts.url || defaultUrl();
      this.id = opts.id == null ? null : String(opts.id);
      this.backoff = Object.assign({}, DEFAULT_BACKOFF, opts.backoff || {});
      this.WebSocketImpl = opts.WebSocket || self.WebSocket;
      this.random = opts.random || Math.random;
      this.setTimer = opts.setTimeout || ((fn, ms) => setTimeout(fn, ms));
      this.clearTimer = opts.clearTimeout || ((t) => clearTimeout(t));
      this.handlers = {};
      this.socket = null;
      this.attempt = 0;
      this.timer = null;
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
      this.open();
    }

    /* Registers (or re-registers) under `id`; remembered for reconnects. */
    register(id) {
      this.id = String(id);
      this.send({ type: "register", id: this.id });
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
      if (this.socket) {
        this.socket.close(1000);
      }
      this.emit("state", { state: "closed" });
    }

    open() {
      this.emit("state", { state: "connecting", attempt: this.attempt });
      const socket = new this.WebSocketImpl(this.url);
      this.socket = socket;
      socket.onopen = () => {
        this.emit("state", { state: "open" });
        if (this.id !== null) {
          this.send({ type: "register", id: this.id });
        }
      };
      socket.onmessage = (event) => this.dispatch(event.data);
      socket.onclose = (event) => {
        if (this.socket !== socket) {
          return;
        }
        this.socket = null;
        this.emit("close", { code: event.code, reason: event.reason });
        if (!this.stopped) {
          this.scheduleReconnect();
        }
      };
      // Errors are followed by close, which does the reconnecting.
      socket.onerror = () => {};
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
      if (frame.type === "registered") {
        // A working session: the next drop starts the backoff from scratch.
        this.attempt = 0;
      }
      this.emit(frame.type, frame);
    }
  }

  return { HeraldClient: HeraldClient, backoffDelay: backoffDelay };
});
