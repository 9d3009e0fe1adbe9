// benchwatch status page: keeps the sections fresh while the page is open, and sends actions with the token.
// The token lives in this tab's sessionStorage only: no cookies, so no other site can act in the user's name.
"use strict";

(function () {
  const TOKEN_KEY = "benchwatch.token";
  const params = new URLSearchParams(location.search);
  const refreshS = Math.min(600, Math.max(0.2, Number(params.get("refresh")) || 5));
  let pending = null; // the action waiting for a token
  let timer = null;

  document.documentElement.classList.add("js");

  function say(message) {
    document.getElementById("action-status").textContent = message;
  }

  function done(message) {
    // the control just used may be gone after the refresh: the keyboard continues from the outcome
    const status = document.getElementById("action-status");
    status.textContent = message;
    status.focus();
  }

  async function refresh() {
    clearTimeout(timer);
    if (document.hidden) {
      return; // a hidden tab asks nothing; becoming visible again refreshes at once (below)
    }
    try {
      const response = await fetch("/api/page" + location.search, { headers: { Accept: "application/json" } });
      if (response.ok) {
        swap(await response.json());
      }
    } catch (error) {
      // the watcher may be restarting: try again on the next tick
    }
    timer = setTimeout(refresh, refreshS * 1000);
  }

  function swap(data) {
    document.getElementById("updated").textContent = data.now;
    // what the reader opened stays open
    const open = new Set(Array.from(document.querySelectorAll("details[data-key][open]"), (d) => d.dataset.key));
    for (const [name, html] of Object.entries(data.sections)) {
      const section = document.querySelector('[data-section="' + name + '"]');
      // never pull the content from under the keyboard: a section holding the keyboard's focus waits (a mouse
      // click focuses too, but leaves no visible focus: that section updates)
      const focused = document.activeElement;
      const held = section && section.contains(focused) && focused.matches(":focus-visible");
      if (section && !held) {
        section.innerHTML = html;
      }
    }
    for (const details of document.querySelectorAll("details[data-key]")) {
      if (open.has(details.dataset.key)) {
        details.open = true;
      }
    }
  }

  function askToken(action, message) {
    pending = action;
    const form = document.getElementById("token-form");
    form.hidden = false;
    say(message || "Actions need the token (http.token).");
    document.getElementById("token-input").focus();
  }

  async function act(method, path, body, then) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      askToken(() => act(method, path, body, then));
      return;
    }
    const headers = { Authorization: "Bearer " + token, Accept: "application/json" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      say("The watcher did not answer; nothing was changed.");
      return;
    }
    const data = await response.json().catch(() => ({}));
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      askToken(() => act(method, path, body, then), "That token was refused; nothing was changed. Enter it again.");
      return;
    }
    if (!response.ok) {
      const problems = data.problems ? " " + data.problems.join("; ") : "";
      say("Refused: " + (data.error || response.statusText) + problems);
      return;
    }
    then(data);
    refresh();
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) {
      return;
    }
    const id = button.dataset.id;
    switch (button.dataset.action) {
      case "expire":
        act("DELETE", "/api/silences/" + encodeURIComponent(id), undefined, () => done("Silence " + id + " expired."));
        break;
      case "retry":
        act("POST", "/api/deliveries/" + encodeURIComponent(id) + "/retry", undefined, () =>
          done("Notification " + id + " queued again."),
        );
        break;
      case "reload":
        act("POST", "/-/reload", undefined, () => done("Config reloaded; it applies from the next poll."));
        break;
      case "cancel-token":
        pending = null;
        document.getElementById("token-form").hidden = true;
        say("");
        break;
    }
  });

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.id === "token-form") {
      event.preventDefault();
      const input = document.getElementById("token-input");
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      input.value = "";
      form.hidden = true;
      const action = pending;
      pending = null;
      if (action) {
        action();
      }
    } else if (form.id === "silence-form") {
      event.preventDefault();
      const fields = new FormData(form);
      const body = {
        matchers: String(fields.get("matchers")).split(/\s+/).filter(Boolean),
        for: String(fields.get("for")),
        comment: String(fields.get("comment")),
      };
      act("POST", "/api/silences", body, (silence) => {
        form.reset();
        form.querySelector("textarea").textContent = "";
        done("Silence " + silence.id + " added: " + body.matchers.join(" ") + ".");
      });
    }
  });

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      refresh();
    }
  });

  timer = setTimeout(refresh, refreshS * 1000);
})();
