/*!
 * cdp-consent.js: the CDP's consent banner, for a website to embed.
 *
 *   <script src="https://cdp.example/static/consent/cdp-consent.js"
 *           data-write-key="KEY" data-api="https://cdp.example" data-jurisdiction="EU"
 *           defer></script>
 *
 * A choice is recorded for the browser's anonymousId and, when the visitor is signed in, their
 * userId (analytics.js' `ajs_user_id`, or `data-user-id`). Where the source verifies identities
 * (the write key is public, so the CDP needs proof that the page speaks for that user), the
 * site's server prints the signed-in user's hash beside it:
 *
 *           data-user-id="USER ID" data-user-hash="hex HMAC-SHA256 of it under the secret"
 *
 * Both are read when a choice is sent, so a single-page app may set them after sign-in. If the
 * CDP cannot verify the user (no hash, or a stale one), the choice is recorded for the browser
 * alone rather than lost.
 *
 * It asks the CDP which purposes and which notice apply (GET /v1/consent/config), shows an
 * accessible banner, remembers the choice on this site (localStorage and a first-party
 * `cdp_consent` cookie, both carrying the notice version and the time of the choice) and
 * records it with the CDP (POST /v1/consent). It asks again under a new notice version, and
 * once the choice is as old as the shortest time the CDP holds a grant of a purpose shown
 * (the config's `consent_validity_days`), 13 months at most. A Global Privacy Control signal
 * outweighs an earlier opt-in to a sale/share purpose: get() answers "denied" for it, and the
 * banner records the opt-out with the CDP as a GPC one. It talks to nothing but `data-api`,
 * loads nothing else and has no dependencies. ES2017, no build step.
 *
 * Page API:
 *   window.cdpConsent.get(purpose)  -> "granted" | "denied" | undefined (no choice yet, or
 *                                      one older than it is kept)
 *   window.cdpConsent.show()        -> opens the banner again (for a "Privacy choices" link)
 *   window.cdpConsent.onChange(fn)  -> fn({state, receipt}) after each change; returns a
 *                                      function that unsubscribes
 *   "cdp:consent" on document       -> a CustomEvent with detail {state, receipt}, likewise
 */
(() => {
  "use strict";

  if (window.cdpConsent) {
    return; // embedded twice: the first one wins
  }

  // document.currentScript is set while a classic script runs, deferred or not; the selector
  // is for loaders that inject the tag some other way.
  const script =
    document.currentScript || document.querySelector("script[data-write-key][src*='cdp-consent']");
  const attr = (name) => (script && script.getAttribute(name)) || "";
  const WRITE_KEY = attr("data-write-key");
  const API = attr("data-api").replace(/\/+$/, "");
  const JURISDICTION = attr("data-jurisdiction");
  // A site with a strict Content-Security-Policy gives this script a nonce; the banner's
  // <style> element carries the same one so that it is not blocked.
  const NONCE = (script && script.nonce) || "";

  const STORE_KEY = "cdp_consent";
  const ANON_KEY = "ajs_anonymous_id"; // analytics.js' key: one anonymous id for both
  const USER_KEY = "ajs_user_id";
  // 13 months, the longest regulators accept before asking again; a purpose whose grants the
  // CDP expires sooner shortens it (choiceDays).
  const CHOICE_DAYS = 395;
  const DAY_MS = 86400000;
  const ANON_DAYS = 365; // what analytics.js uses for its own cookie
  const REQUEST_TIMEOUT_MS = 10000;
  const PREFIX = "cdp-consent";
  const GRANTED = "granted";
  const DENIED = "denied";

  // --- storage on the site --------------------------------------------------------------

  function readCookie(name) {
    for (const part of document.cookie ? document.cookie.split("; ") : []) {
      const eq = part.indexOf("=");
      if (part.slice(0, eq) === name) {
        try {
          return decodeURIComponent(part.slice(eq + 1));
        } catch (error) {
          return part.slice(eq + 1);
        }
      }
    }
    return null;
  }

  function writeCookie(name, value, days) {
    const secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `${name}=${encodeURIComponent(value)}; Path=/; Max-Age=${days * 86400}; SameSite=Lax${secure}`;
  }

  function readLocal(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (error) {
      return null; // storage disabled (browser settings, a sandboxed iframe)
    }
  }

  function writeLocal(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch (error) {
      // full or disabled: the cookie still carries the choice
    }
  }

  // analytics.js keeps ids JSON-encoded in localStorage ("\"abc\"") and raw in its cookie,
  // and reads either form from either place; so does this.
  function parseId(raw) {
    if (!raw) return null;
    try {
      const value = JSON.parse(raw);
      return typeof value === "string" && value ? value : null;
    } catch (error) {
      return raw;
    }
  }

  function uuid4() {
    if (typeof crypto.randomUUID === "function") {
      return crypto.randomUUID(); // secure contexts only (https, localhost)
    }
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => (b + 0x100).toString(16).slice(1)).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  // The anonymous id is made only when a choice is recorded: proving consent needs a subject,
  // but nobody needs an identifier on a visitor who has not decided anything yet.
  function anonymousId() {
    const id = parseId(readLocal(ANON_KEY)) || parseId(readCookie(ANON_KEY)) || uuid4();
    // written back both ways, so that analytics.js, loaded later, takes up the same id
    writeLocal(ANON_KEY, JSON.stringify(id));
    writeCookie(ANON_KEY, id, ANON_DAYS);
    return id;
  }

  const userId = () => parseId(readLocal(USER_KEY)) || parseId(readCookie(USER_KEY));

  // The signed-in user to name, with the hash the site's server computed for them: the
  // script tag's (the site knows who is signed in), else analytics.js' stored userId. A hash
  // goes only with the userId of the tag, the one it was computed for.
  function signedInUser() {
    const tagged = attr("data-user-id");
    if (tagged) return { userId: tagged, userHash: attr("data-user-hash") || null };
    return { userId: userId(), userHash: null };
  }

  function parseChoice(raw) {
    try {
      const value = raw ? JSON.parse(raw) : null;
      return value && typeof value.decisions === "object" && value.decisions ? value : null;
    } catch (error) {
      return null;
    }
  }

  // localStorage has everything; the cookie (what the site's own server can read) has the
  // decisions, the notice version, the time of the choice, the sale/share purposes and how
  // long the choice is kept, and stands in when localStorage was cleared.
  const loadChoice = () => parseChoice(readLocal(STORE_KEY)) || parseChoice(readCookie(STORE_KEY));

  // The days a choice is kept: `days` when it is a number of them, never more than CHOICE_DAYS.
  const keptDays = (days) =>
    Number.isInteger(days) && days > 0 ? Math.min(days, CHOICE_DAYS) : CHOICE_DAYS;

  function saveChoice(current) {
    writeLocal(STORE_KEY, JSON.stringify(current));
    const { version, notice, decisions, timestamp, saleOrShare, days } = current;
    const cookie = { version, notice, decisions, timestamp, saleOrShare, days };
    writeCookie(STORE_KEY, JSON.stringify(cookie), keptDays(days));
  }

  // --- state ----------------------------------------------------------------------------

  let config = null; // the answer of GET /v1/consent/config
  // {version, notice, jurisdiction, decisions, saleOrShare, days, gpc, timestamp, receipt,
  // sent, gpcOptOut}; `decisions` holds every purpose, the required ones as granted, and
  // `saleOrShare` the keys of the purposes a GPC signal opts out of and `days` how long the
  // choice is kept, so that get() answers before the config has loaded on the next page;
  // `sent` is true, false (to retry) or "refused"; `gpcOptOut` ({timestamp, sent}) is there
  // once a GPC signal overrode the choice.
  let choice = loadChoice();
  let listeners = [];
  let ui = null; // the banner's elements while it is open
  let ready = null; // resolves true once the config is in, false if it could not be had

  const purposes = () => (config && config.purposes) || [];

  // The Sec-GPC header is invisible to page script; the server reports it as config.gpc.
  const gpcOn = () => navigator.globalPrivacyControl === true || Boolean(config && config.gpc);

  // The purposes a GPC signal opts out of: the config's once it is in, else those stored with
  // the choice (a choice stored by an older version of this script has none).
  function saleOrShare() {
    if (config) return purposes().filter((p) => p.sale_or_share).map((p) => p.key);
    return choice && Array.isArray(choice.saleOrShare) ? choice.saleOrShare : [];
  }

  // How long a choice is kept: no longer than the CDP holds a grant of any purpose shown (a
  // workspace may set a shorter validity than 13 months; the CDP expires a grant that old,
  // and the site must not go on reading it as granted), and CHOICE_DAYS at most. Before the
  // config is in, the days stored with the choice (one stored by an older version of this
  // script has none: CHOICE_DAYS).
  function choiceDays() {
    if (!config) return keptDays(choice && choice.days);
    const validities = purposes().map((p) => keptDays(p.consent_validity_days));
    return Math.min(CHOICE_DAYS, ...validities);
  }

  // A choice is kept choiceDays(), then asked again; localStorage never expires by itself, so
  // the time of the choice decides, as the age of a grant does on the CDP (a grant as old as
  // its validity has expired). A time that cannot be read counts as expired.
  function choiceIsFresh() {
    const made = choice && typeof choice.timestamp === "string" ? Date.parse(choice.timestamp) : NaN;
    return Number.isFinite(made) && Date.now() - made < choiceDays() * DAY_MS;
  }

  function choiceIsCurrent() {
    return Boolean(
      choice &&
        config &&
        config.notice &&
        choice.version === config.notice.version &&
        choice.notice === config.notice.key &&
        purposes().every((purpose) => purpose.key in choice.decisions) &&
        choiceIsFresh()
    );
  }

  function announce(receipt) {
    const detail = { state: Object.assign({}, choice.decisions), receipt: receipt || null };
    for (const fn of listeners.slice()) {
      try {
        fn(detail);
      } catch (error) {
        console.error("cdp-consent: an onChange listener failed", error);
      }
    }
    document.dispatchEvent(new CustomEvent("cdp:consent", { detail }));
  }

  // --- the CDP's API --------------------------------------------------------------------

  async function request(path, init) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    try {
      const defaults = {
        credentials: "omit", // the CDP sets no cookies; the site's are none of its business
        cache: "no-store",
        signal: controller.signal,
      };
      const response = await fetch(API + path, Object.assign(defaults, init));
      const body = await response.json();
      if (!response.ok) {
        const error = new Error((body && body.code) || `HTTP ${response.status}`);
        error.status = response.status;
        error.code = (body && body.code) || "";
        throw error;
      }
      return body;
    } finally {
      clearTimeout(timer);
    }
  }

  function fetchConfig() {
    let query = `?writeKey=${encodeURIComponent(WRITE_KEY)}`;
    if (JURISDICTION) query += `&jurisdiction=${encodeURIComponent(JURISDICTION)}`;
    return request(`/v1/consent/config${query}`, { method: "GET" });
  }

  // With `gpcOptOut`, the GPC signal alone and no decisions: the CDP records the opt-out as
  // a GPC one (method gpc, flagged for re-consent), not as a choice made in the banner. With
  // `anonymousOnly`, no userId: the choice is the browser's alone.
  function postChoice(current, gpcOptOut, anonymousOnly) {
    const decisions = {};
    for (const [key, decision] of Object.entries(current.decisions)) {
      // Required purposes rest on another legal basis than consent: nothing to record.
      if (!gpcOptOut && !isRequired(key)) decisions[key] = decision;
    }
    const body = {
      writeKey: WRITE_KEY,
      anonymousId: anonymousId(),
      decisions,
      noticeVersion: current.version,
      jurisdiction: current.jurisdiction || undefined,
      gpc: gpcOptOut ? true : current.gpc,
      timestamp: gpcOptOut ? current.gpcOptOut.timestamp : current.timestamp,
      context: { page: { url: location.href }, userAgent: navigator.userAgent },
      method: "banner",
    };
    const user = anonymousOnly ? {} : signedInUser();
    if (user.userId) body.userId = user.userId;
    if (user.userId && user.userHash) body.userHash = user.userHash;
    // A string body goes as text/plain and the write key rides in the body, not in an
    // Authorization header: a "simple" cross-origin request, so no CORS preflight. keepalive
    // lets the request finish when the visitor navigates away at once.
    return request("/v1/consent", { method: "POST", body: JSON.stringify(body), keepalive: true });
  }

  const UNVERIFIED = ["identity_verification_required", "identity_verification_failed", "invalid_user_id"];

  // The source verifies identities and the page gave no hash for the userId, or one that does
  // not match (a rotated secret, a stale ajs_user_id), or a userId with surrounding whitespace
  // (which a verifying source refuses): the choice is still the browser's to record, for its
  // anonymousId alone, rather than lost.
  async function postChoiceOrAnonymously(current, gpcOptOut) {
    try {
      return await postChoice(current, gpcOptOut, false);
    } catch (error) {
      if (!UNVERIFIED.includes(error.code)) throw error;
      console.warn(`cdp-consent: the signed-in user could not be verified (${error.code}); recording the choice for this browser only`);
      return postChoice(current, gpcOptOut, true);
    }
  }

  // Sends the choice, or with `gpcOptOut` the GPC opt-out that overrode it.
  async function send(current, gpcOptOut) {
    const pending = gpcOptOut ? current.gpcOptOut : current;
    try {
      const answer = await postChoiceOrAnonymously(current, gpcOptOut);
      const receipt = answer.receipt || null;
      if (current === choice) {
        adoptServerState(answer.state);
        // none when the CDP had the opt-out already (from another page or device)
        if (receipt || !gpcOptOut) choice.receipt = receipt;
        pending.sent = true;
        saveChoice(choice);
      }
      return receipt;
    } catch (error) {
      // A refusal (4xx) would be refused again: not retried. A network failure, a timeout, a
      // 408/429 or a 5xx is retried on the next page view.
      const status = error.status || 0;
      const refused = status >= 400 && status < 500 && status !== 408 && status !== 429;
      if (refused && current === choice) {
        pending.sent = "refused";
        saveChoice(choice);
      }
      console.warn("cdp-consent: the choice is kept on this site but was not recorded:", error.message);
      return null;
    }
  }

  // The CDP's answer is the state it enforces (a GPC signal, or a choice made on another
  // device under the same userId, may outweigh this banner): get() says the same.
  function adoptServerState(state) {
    if (!state || typeof state !== "object") return;
    for (const key of Object.keys(choice.decisions)) {
      if (key in state && !isRequired(key)) {
        choice.decisions[key] = state[key] === GRANTED ? GRANTED : DENIED;
      }
    }
  }

  const isRequired = (key) => purposes().some((p) => p.key === key && p.required);

  async function record(decisions) {
    const notice = config.notice || {};
    choice = {
      version: notice.version,
      notice: notice.key,
      // The config answers "default" when no jurisdiction was named; that is no jurisdiction
      // to record (the API then takes the edge's CDP-Jurisdiction header, if any).
      jurisdiction: config.jurisdiction && config.jurisdiction !== "default" ? config.jurisdiction : JURISDICTION,
      decisions,
      saleOrShare: saleOrShare(),
      days: choiceDays(),
      gpc: gpcOn(),
      timestamp: new Date().toISOString(),
      receipt: null,
      sent: false,
    };
    // Stored before sending, so that get() answers at once, and a failed send is retried on
    // the next page view instead of asking the visitor again.
    saveChoice(choice);
    announce(await send(choice));
  }

  // --- decisions from the banner --------------------------------------------------------

  function decide(pick) {
    const decisions = {};
    for (const purpose of purposes()) {
      decisions[purpose.key] = purpose.required ? GRANTED : pick(purpose);
    }
    return decisions;
  }

  // A GPC signal opts out of sale and sharing whatever the banner says (the CDP records it
  // so too), so not even "Accept all" grants those purposes then.
  const acceptAll = () => decide((p) => (p.sale_or_share && gpcOn() ? DENIED : GRANTED));
  const rejectAll = () => decide(() => DENIED);
  const fromCheckboxes = () =>
    decide((p) => (document.getElementById(`${PREFIX}-purpose-${p.key}`).checked ? GRANTED : DENIED));

  // A checkbox starts as the previous choice when asking again, else the purpose's default
  // for the jurisdiction; with a GPC signal a sale/share purpose is off (and cannot be ticked).
  function initialDecision(purpose) {
    if (purpose.required) return GRANTED;
    if (purpose.sale_or_share && gpcOn()) return DENIED;
    if (choice && choice.decisions[purpose.key]) return choice.decisions[purpose.key];
    return purpose.default === "opt_out" ? GRANTED : DENIED;
  }

  // --- the banner -----------------------------------------------------------------------

  const P = `.${PREFIX}`;
  const CSS = `
${P}{position:fixed;z-index:2147483647;left:0;right:0;bottom:0;max-height:90vh;overflow:auto;
box-sizing:border-box;padding:1.25rem;background:#fff;color:#1a1a1a;border-top:2px solid #1a1a1a;
font:16px/1.5 system-ui,sans-serif;box-shadow:0 -4px 16px rgba(0,0,0,.2)}
${P}:focus{outline:none}
${P} [hidden]{display:none!important}
${P} h2{margin:0 0 .5rem;font-size:1.25rem}
${P} p{margin:0 0 1rem}
${P}-actions{display:flex;flex-wrap:wrap;gap:.5rem}
${P} button{font:inherit;padding:.5rem 1rem;border:2px solid #1a1a1a;border-radius:4px;
background:#fff;color:#1a1a1a;cursor:pointer}
${P} button:hover{background:#eee}
${P} :focus-visible{outline:3px solid #1558d6;outline-offset:2px}
${P} fieldset{border:0;margin:0 0 1rem;padding:0}
${P} legend{font-weight:600;margin-bottom:.5rem}
${P}-purpose{margin:0 0 .75rem}
${P}-purpose label{font-weight:600}
${P}-purpose input{width:1.1rem;height:1.1rem;margin:0 .5rem 0 0;vertical-align:middle}
${P}-purpose p{margin:.25rem 0 0 1.6rem;font-size:.9rem;color:#444}
${P} a{color:#1558d6}
`;
  // Accept and reject look alike on purpose: regulators ask for equal prominence. Focus is
  // always visible (:focus-visible), whatever the site's own stylesheet resets.

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") {
        node.textContent = value; // never innerHTML: the texts come from the server
      } else if (value === true) {
        node.setAttribute(name, "");
      } else if (value !== false && value !== null && value !== undefined) {
        node.setAttribute(name, value);
      }
    }
    for (const child of children || []) {
      if (child) node.appendChild(child);
    }
    return node;
  }

  function button(id, label, onClick) {
    const node = el("button", { type: "button", id: `${PREFIX}-${id}`, text: label });
    node.addEventListener("click", onClick);
    return node;
  }

  function ensureStyle() {
    if (document.getElementById(`${PREFIX}-style`)) return;
    const style = el("style", { id: `${PREFIX}-style`, nonce: NONCE || null });
    style.textContent = CSS;
    document.head.appendChild(style);
  }

  // Only web links: a javascript: URL in a tampered config must not become a link.
  const safeLink = (url) => (/^https?:\/\//i.test(url || "") ? url : null);

  function purposeRow(purpose) {
    const id = `${PREFIX}-purpose-${purpose.key}`;
    const notes = [purpose.description || ""];
    if (purpose.required) {
      notes.push("Always on: the site needs it to work.");
    } else if (purpose.sale_or_share && gpcOn()) {
      notes.push("Off: your browser sends a Global Privacy Control signal, which opts you out.");
    }
    const note = notes.filter(Boolean).join(" ");
    const box = el("input", {
      type: "checkbox",
      id,
      name: purpose.key,
      "aria-describedby": note ? `${id}-description` : null,
      disabled: Boolean(purpose.required) || Boolean(purpose.sale_or_share && gpcOn()),
    });
    box.checked = initialDecision(purpose) === GRANTED;
    return el("div", { class: `${PREFIX}-purpose` }, [
      box,
      el("label", { for: id, text: purpose.name || purpose.key }),
      note ? el("p", { id: `${id}-description`, text: note }) : null,
    ]);
  }

  function buildBanner() {
    const notice = config.notice || {};
    const policy = safeLink(notice.policy_url);
    const main = el("div", { id: `${PREFIX}-main`, class: `${PREFIX}-actions` }, [
      button("accept", "Accept all", () => choose(acceptAll())),
      button("reject", "Reject all", () => choose(rejectAll())),
      button("customise", "Customise", () => showView("customise")),
    ]);
    const customise = el("div", { id: `${PREFIX}-customise`, hidden: true }, [
      el("fieldset", {}, [el("legend", { text: "Purposes" }), ...purposes().map(purposeRow)]),
      el("div", { class: `${PREFIX}-actions` }, [
        button("save", "Save choices", () => choose(fromCheckboxes())),
        button("accept-all-customise", "Accept all", () => choose(acceptAll())),
        button("back", "Back", () => showView("main")),
      ]),
    ]);
    const dialog = el(
      "div",
      {
        class: PREFIX,
        id: `${PREFIX}-dialog`,
        role: "dialog",
        "aria-modal": "true",
        "aria-labelledby": `${PREFIX}-title`,
        "aria-describedby": `${PREFIX}-text`,
        lang: notice.language || null,
        // focusable by script only: opening focuses the dialog itself, so a screen reader reads
        // its name and text first, and no button is pre-selected for a stray Enter
        tabindex: "-1",
      },
      [
        el("h2", { id: `${PREFIX}-title`, text: "Your privacy choices" }),
        el("p", { id: `${PREFIX}-text` }, [
          document.createTextNode(notice.text || ""),
          policy ? document.createTextNode(" ") : null,
          policy ? el("a", { href: policy, text: "Privacy policy", target: "_blank", rel: "noopener" }) : null,
        ]),
        main,
        customise,
      ]
    );
    dialog.addEventListener("keydown", onKeydown);
    return { dialog, main, customise, returnFocus: null };
  }

  function focusable() {
    if (!ui) return [];
    const nodes = ui.dialog.querySelectorAll("button, input, a[href]");
    return Array.from(nodes).filter((node) => !node.disabled && !node.closest("[hidden]"));
  }

  function onKeydown(event) {
    if (event.key === "Escape" && !ui.customise.hidden) {
      // Escape leaves the customise view. It does not dismiss the banner, which waits for an
      // answer: closing it without one would be neither a consent nor a refusal.
      event.preventDefault();
      showView("main");
      return;
    }
    if (event.key !== "Tab") return;
    // aria-modal tells assistive technology that the page behind is inert; keyboard focus
    // stays inside as well, wrapping at both ends.
    const nodes = focusable();
    if (!nodes.length) return;
    const first = nodes[0];
    const last = nodes[nodes.length - 1];
    const active = document.activeElement;
    if (event.shiftKey && (active === first || active === ui.dialog)) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && active === last) {
      event.preventDefault();
      first.focus();
    }
  }

  // Focus that strays out while the dialog is open (a click on the page behind) comes back.
  function onFocusIn(event) {
    if (ui && !ui.dialog.contains(event.target)) {
      ui.dialog.focus();
    }
  }

  function showView(name) {
    ui.main.hidden = name !== "main";
    ui.customise.hidden = name !== "customise";
    const target =
      name === "main"
        ? document.getElementById(`${PREFIX}-customise`)
        : ui.customise.querySelector("input:not([disabled])") || focusable()[0];
    if (target) target.focus();
  }

  function open() {
    if (ui) return;
    ensureStyle();
    ui = buildBanner();
    ui.returnFocus = document.activeElement;
    document.body.appendChild(ui.dialog);
    document.addEventListener("focusin", onFocusIn);
    ui.dialog.focus();
  }

  function close() {
    if (!ui) return;
    document.removeEventListener("focusin", onFocusIn);
    ui.dialog.remove();
    const back = ui.returnFocus;
    ui = null;
    if (back && back !== document.body && typeof back.focus === "function") back.focus();
  }

  function choose(decisions) {
    close();
    return record(decisions);
  }

  // --- start ----------------------------------------------------------------------------

  // A GPC signal opts out of sale and sharing even over an earlier opt-in (CCPA regs
  // 7025(c)(3)): the stored choice yields to it, and the CDP is told, so that it stops the
  // sale/share activations too. The site may then ask again (show()).
  function yieldToGpc() {
    const granted = saleOrShare().filter((key) => choice.decisions[key] === GRANTED);
    if (!gpcOn() || !granted.length) return false;
    for (const key of granted) choice.decisions[key] = DENIED;
    choice.gpc = true;
    choice.gpcOptOut = { timestamp: new Date().toISOString(), sent: false };
    saveChoice(choice);
    return true;
  }

  // For a current choice: what the CDP has not got yet, in order (the choice, then the GPC
  // opt-out over it).
  async function catchUp() {
    const current = choice;
    const keys = saleOrShare();
    const days = choiceDays();
    if (String(current.saleOrShare) !== String(keys) || current.days !== days) {
      // for get() on the next page, before the config is in
      current.saleOrShare = keys;
      current.days = days;
      saveChoice(current);
    }
    if (current.sent === false) {
      await send(current); // made here last time, but the CDP never got it
      if (current !== choice) return; // chosen anew meanwhile
    }
    if (yieldToGpc()) {
      announce(await send(current, true));
    } else if (current.gpcOptOut && current.gpcOptOut.sent === false) {
      send(current, true); // applied here last time, but the CDP never got it
    }
  }

  async function start() {
    if (!WRITE_KEY || !API) {
      console.error("cdp-consent: the script tag needs data-write-key and data-api");
      return false;
    }
    try {
      config = await fetchConfig();
    } catch (error) {
      // Without a config there is nothing to show; the site keeps its no-consent default.
      console.warn("cdp-consent: the consent configuration could not be loaded:", error.message);
      return false;
    }
    if (!choiceIsCurrent()) {
      open(); // no choice yet, one made under another notice version, or one too old
    } else {
      catchUp();
    }
    return true;
  }

  window.cdpConsent = {
    get(purpose) {
      // an expired choice is no choice: the page keeps its no-consent default until asked
      if (!choice || !choiceIsFresh()) return undefined;
      const decision = choice.decisions[purpose];
      // Before the stored choice has yielded to a GPC signal (the config is not in yet):
      // the signal wins all the same.
      if (decision === GRANTED && gpcOn() && saleOrShare().includes(purpose)) return DENIED;
      return decision === GRANTED || decision === DENIED ? decision : undefined;
    },
    async show() {
      if (await (ready || (ready = start()))) open();
    },
    onChange(fn) {
      listeners.push(fn);
      return () => {
        listeners = listeners.filter((other) => other !== fn);
      };
    },
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => {
      ready = ready || start();
    });
  } else {
    ready = start();
  }
})();
