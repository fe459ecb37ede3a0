// ParanoIM web UI: the little behaviour the pages need — copy buttons, the live
// vanity progress bar (server-sent events) and a size check before a QR photo upload.
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
  document.querySelectorAll("[data-copy]").forEach((b) => b.addEventListener("click", () => copyValue(b)));
  const job = document.getElementById("vanity-job");
  if (job) watchVanity(job);
  const scan = document.getElementById("scan-form");
  if (scan) checkPhotoSize(scan);
});
