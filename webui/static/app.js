// ParanoIM web UI: the little behaviour the pages need — copy buttons, the live
// vanity progress bar (server-sent events), live Contacts and Node pages (an event
// says what changed; the page fetches itself and swaps its live parts) and a size
// check before a QR photo upload.
// Served as a file because the Content-Security-Policy forbids inline scripts.
"use strict";

function copyValue(button) {
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  const done = () => {
    const label = button.textContent;
    button.textContent = "Copied";
    button.classList.add("copied");
    setTimeout(() => { button.textContent = label; button.classList.remove("copied"); }, 1500);
  };
  field.select();
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(field.value).then(done, () => {
      if (document.execCommand("copy")) done();
    });
  } else if (document.execCommand("copy")) {
    done();
  }
}

function watchVanity(card) {
  if (card.dataset.state !== "running" || !window.EventSource) return;
  const bar = document.getElementById("vanity-bar");
  const set = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text; };
  const source = new EventSource(card.dataset.events);
  source.addEventListener("progress", (event) => {
    const p = JSON.parse(event.data);
    bar.value = p.fraction;
    bar.textContent = p.percent_text;
    set("v-attempts", p.attempts_text);
    set("v-expected", p.expected_text);
    set("v-rate", p.rate_text);
    set("v-elapsed", p.elapsed_text);
    set("v-remaining", p.remaining_text);
    card.dataset.attempts = String(p.attempts);
    if (p.state !== "running") {
      source.close();
      window.location.reload();  // the server renders the result (or the error)
    }
  });
}

function liveUpdates(root) {
  if (!window.EventSource || !window.fetch || !window.DOMParser) return;
  const topic = root.dataset.live;
  const owner = root.dataset.owner || "";
  let busy = false;
  let again = false;
  const refresh = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const response = await fetch(window.location.href, {
        headers: { "X-Live-Refresh": "1" }, credentials: "same-origin", cache: "no-store",
      });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      document.querySelectorAll("[data-live-part]").forEach((part) => {
        const replacement = fresh.getElementById(part.id);
        if (replacement) part.replaceWith(document.adoptNode(replacement));
      });
      document.querySelectorAll("[data-live-part] [data-copy]").forEach(bindCopy);
      document.body.dataset.liveRefreshes = String(Number(document.body.dataset.liveRefreshes || 0) + 1);
    } catch (error) {
      // the daemon is stopping or the network blinked: the next event tries again
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  };
  const source = new EventSource(`/live?topic=${encodeURIComponent(topic)}`);
  source.addEventListener("open", () => { document.body.dataset.live = "open"; });
  source.addEventListener("changed", (event) => {
    const change = JSON.parse(event.data);
    if (change.what === topic && (!owner || !change.owner || change.owner === owner)) refresh();
  });
}

function bindCopy(button) {
  button.addEventListener("click", () => copyValue(button));
}

function checkPhotoSize(form) {
  const input = form.querySelector("input[type=file]");
  const error = document.getElementById("scan-error");
  const max = Number(form.dataset.maxBytes);
  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    const tooBig = file && max && file.size > max;
    error.hidden = !tooBig;
    error.textContent = tooBig
      ? `That photo is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${(max / 1048576).toFixed(0)} MB. Take a closer, smaller photo or a screenshot.`
      : "";
    if (tooBig) input.value = "";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-copy]").forEach(bindCopy);
  const job = document.getElementById("vanity-job");
  if (job) watchVanity(job);
  const scan = document.getElementById("scan-form");
  if (scan) checkPhotoSize(scan);
  const live = document.querySelector("[data-live]");
  if (live) liveUpdates(live);
});
