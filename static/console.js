/*
 * The console page: connects to herald, registers a random numeric id (as the
 * original Tornado console did), one per browser tab, kept across reloads of
 * that tab (sessionStorage), so a reload catches up on what it missed while
 * a direct message to one tab's id never shows in another tab; then prints
 * everything that arrives. Text is only ever
 * set through textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  const log = document.getElementById("log");
  const state = document.getElementById("state");
  const idLabel = document.getElementById("client-id");
  const id = rememberedId();
  idLabel.textContent = id;
  const origin = location.origin;
  document.getElementById("curl-all").textContent = "curl " + origin + " -d message=Ping";
  document.getElementById("curl-direct").textContent =
    "curl " + origin + " -d message=Hi -d id=" + id;

  /* This tab's storage; null where storage is disabled. */
  function tabStorage() {
    try {
      return window.sessionStorage || null;
    } catch (e) {
      return null;
    }
  }

  function rememberedId() {
    const fresh = String(Math.floor(Math.random() * 1000000));
    try {
      const saved = tabStorage().getItem("herald.console.id");
      if (saved) {
        return saved;
      }
      tabStorage().setItem("herald.console.id", fresh);
    } catch (e) {
      // No storage: a new id on every load.
    }
    return fresh;
  }

  function line(kind, text) {
    const entry = document.createElement("div");
    entry.className = "entry " + kind;
    const time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    const body = document.createElement(kind === "json" ? "pre" : "span");
    body.textContent = text;
    entry.append(time, body);
    log.append(entry);
    entry.scrollIntoView({ block: "end" });
  }

  function showData(frame) {
    const data = frame.data;
    let prefix = "#" + frame.seq + " ";
    if (frame.id !== undefined) {
      prefix += "[to " + frame.id + "] ";
    } else if (frame.channel !== undefined) {
      prefix += "[" + frame.channel + "] ";
    }
    if (data !== null && typeof data === "object") {
      line("json", prefix + JSON.stringify(data, null, 2));
    } else {
      line("message", prefix + String(data));
    }
    showPosition();
  }

  function showPosition() {
    const p = client.position;
    document.getElementById("position").textContent = p ? p.epoch + ":" + p.seq : "–";
  }

  function showChannels() {
    const box = document.getElementById("channels");
    box.replaceChildren();
    for (const name of client.channels) {
      const tag = document.createElement("span");
      tag.textContent = name;
      box.append(tag);
    }
  }

  function setState(text, kind) {
    state.textContent = text;
    state.className = "state " + kind;
  }

  function showTransport(name) {
    document.getElementById("transport").textContent = name || "–";
  }

  /* Why herald.js changed transport, for the log. */
  function transportChange(t) {
    if (t.reason === "fallback") {
      return "Switching to " + t.transport + ": " + t.previous + " does not get through.";
    }
    if (t.reason === "upgrade") {
      return "Trying " + t.transport + " again.";
    }
    return "Back to " + t.transport + ".";
  }

  const client = new HeraldClient({ id: id, channels: savedChannels(), storage: tabStorage() });

  function savedChannels() {
    try {
      return JSON.parse(tabStorage().getItem("herald.console.channels")) || [];
    } catch (e) {
      return [];
    }
  }

  function saveChannels() {
    try {
      tabStorage().setItem("herald.console.channels", JSON.stringify([...client.channels]));
    } catch (e) {
      // Not saved: the page forgets its channels on reload.
    }
    showChannels();
  }

  const channelInput = document.getElementById("channel");
  document.getElementById("subscribe-form").addEventListener("submit", (event) => {
    event.preventDefault();
    client.subscribe(channelInput.value.trim());
    saveChannels();
  });
  document.getElementById("unsubscribe").addEventListener("click", () => {
    client.unsubscribe(channelInput.value.trim());
    saveChannels();
  });

  document.getElementById("publish-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = document.getElementById("publish-result");
    const text = document.getElementById("message").value;
    let message = text;
    try {
      message = JSON.parse(text); // structured messages as JSON
    } catch (e) {
      // plain text
    }
    const body = { message: message };
    const kind = document.getElementById("target-kind").value;
    const target = document.getElementById("target").value.trim();
    if (kind && target) {
      body[kind] = target;
    }
    const headers = { "Content-Type": "application/json" };
    const key = document.getElementById("key").value;
    if (key) {
      headers.Authorization = "Bearer " + key;
    }
    try {
      const response = await fetch("/", { method: "POST", headers: headers, body: JSON.stringify(body) });
      const reply = await response.json();
      result.textContent = response.ok
        ? "published #" + reply.seq + (reply.delivered == null ? "" : ", delivered to " + reply.delivered)
        : "refused (" + response.status + "): " + reply.error;
    } catch (e) {
      result.textContent = "could not publish: " + e;
    }
  });
  client
    .on("state", (s) => {
      if (s.transport) {
        showTransport(s.transport);
      }
      if (s.state === "open") {
        setState("connected", "ok");
        line("info", "Connected.");
      } else if (s.state === "connecting") {
        setState("connecting…", "wait");
      } else if (s.state === "reconnecting") {
        setState("disconnected, retrying in " + (s.delayMs / 1000).toFixed(1) + " s", "down");
      } else {
        setState(s.state, "down");
      }
    })
    .on("registered", (frame) => {
      line("info", frame.greeting || "Hello client " + frame.id);
      showPosition();
    })
    .on("subscribed", (frame) => line("info", "Subscribed to " + frame.channel + "."))
    .on("unsubscribed", (frame) => line("info", "Unsubscribed from " + frame.channel + "."))
    .on("message", showData)
    .on("resumed", (f) => line("info", "Caught up: " + f.count + " missed message(s)."))
    .on("reset", (f) => line("info", "Missed messages unavailable (" + f.reason + "); new ones follow."))
    .on("error", (frame) => line("error", "error: " + frame.error))
    .on("close", (c) => line("info", "Disconnected (" + c.code + (c.reason ? ", " + c.reason : "") + ")."))
    .on("transport", (t) => {
      showTransport(t.transport);
      line("info", transportChange(t));
    });
  showChannels();
  showTransport(client.transport);
  client.connect();
})();
