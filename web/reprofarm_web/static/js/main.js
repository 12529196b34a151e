// The dashboard's entry: sign in, ask who we are, route, stay live.

import * as api from "./api.js";
import * as router from "./router.js";
import { watch } from "./live.js";
import * as overview from "./pages/overview.js";
import * as jobs from "./pages/jobs.js";
import * as job from "./pages/job.js";
import * as study from "./pages/study.js";
import * as run from "./pages/run.js";
import * as signatures from "./pages/signatures.js";
import * as agents from "./pages/agents.js";
import * as hardware from "./pages/hardware.js";
import * as submit from "./pages/submit.js";
import * as triage from "./pages/triage.js";

router.route("/", overview);
router.route("/jobs", jobs);
router.route("/jobs/:id", job);
router.route("/studies/:id", study);
router.route("/runs/:id", run);
router.route("/signatures", signatures);
router.route("/agents", agents);
router.route("/hardware/:fingerprint", hardware);
router.route("/submit", submit);
router.route("/triage", triage);

const page = document.getElementById("page");
const status = document.getElementById("status");
const signIn = document.getElementById("token-section");

function markNav(name) {
  const section = { job: "jobs", study: "jobs", run: "jobs", hardware: "overview" }[name] || name;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.nav === section) { a.setAttribute("aria-current", "page"); } else { a.removeAttribute("aria-current"); }
  }
}

function askForToken(message) {
  signIn.hidden = false;
  status.textContent = message;
  document.getElementById("token-input").focus();
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  api.setToken(document.getElementById("token-input").value);
  api.forgetWhoami();
  document.getElementById("token-input").value = "";
  boot();
});

let started = false;

async function boot() {
  if (!api.hasToken()) { askForToken("not signed in"); return; }
  let me;
  try {
    me = await api.whoami();
  } catch (err) {
    if (err.status === 401 || err.status === 403) { askForToken(`sign-in refused: ${err.message}`); return; }
    status.textContent = `not connected: ${err.message}`;
    setTimeout(boot, 3000);
    return;
  }
  signIn.hidden = true;
  document.getElementById("whoami").textContent = `${me.name} (${me.role})`;
  document.getElementById("nav-submit").hidden = !me.can_submit;
  if (started) { await router.render(page, { me }); return; }
  started = true;
  await router.start(page, { me }, markNav);
  watch(async (changed) => {
    const controller = router.currentController();
    if (controller && controller.parts.some((p) => changed.has(p))) { await controller.refresh(); }
  }, (err) => {
    status.textContent = err ? `not updated: ${err.message}` : `live · ${new Date().toLocaleTimeString()}`;
    if (err && err.status === 401) { askForToken("the token was refused"); }
  });
}

api.takeTokenFromLocation();
boot();
