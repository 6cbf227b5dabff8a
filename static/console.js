/*
 * The console page: connects to herald, registers a random numeric id (as the
 * original Tornado console did; kept across reloads, so a reload catches up
 * on what it missed) and prints everything that arrives. Text is only ever
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

  function rememberedId() {
    try {
      const saved = localStorage.getItem("herald.console.id");
      if (saved) {
        return saved;
      }
      const fresh = String(Math.floor(Math.random() * 1000));
      localStorage.setItem("herald.console.id", fresh);
      return fresh;
    } catch (e) {
      return String(Math.floor(Math.random() * 1000));
    }
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
  }

  function setState(text, kind) {
    state.textContent = text;
    state.className = "state " + kind;
  }

  const client = new HeraldClient({ id: id });
  client
    .on("state", (s) => {
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
    .on("registered", (frame) => line("info", frame.greeting || "Hello client " + frame.id))
    .on("message", showData)
    .on("resumed", (f) => line("info", "Caught up: " + f.count + " missed message(s)."))
    .on("reset", (f) => line("info", "Missed messages unavailable (" + f.reason + "); new ones follow."))
    .on("error", (frame) => line("error", "error: " + frame.error))
    .on("close", (c) => line("info", "Disconnected (" + c.code + (c.reason ? ", " + c.reason : "") + ")."));
  client.connect();
})();
