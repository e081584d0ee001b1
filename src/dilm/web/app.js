// dilm's web page: chat (streamed), feedback, what dilm knows about you, and (for admins) adapters and
// satisfaction. Plain ES module, no build step, no external assets. Every request goes through `api()` (or
// `streamChat()`), which sends the API key as `Authorization: Bearer KEY` and turns an error body
// (`{"error": {"message"}}`) into an ApiError that the caller shows to the user.

// ---------------------------------------------------------------------------------------------------------
// UI strings: every string the page shows, in one dictionary.

const STRINGS = {
  en: {
    skip: "Skip to the message box",
    actAs: "Act as user",
    apply: "Apply",
    language: "Language",
    signOut: "Change key",
    signInTitle: "Sign in",
    signInHelp: "Paste an API key (it is kept in this browser only).",
    apiKey: "API key",
    signIn: "Sign in",
    sessions: "Conversations",
    newChat: "New chat",
    chat: "Chat",
    message: "Message",
    placeholder: "Ask something… (Enter sends, Shift+Enter for a new line)",
    send: "Send",
    attach: "Image",
    attachHelp: "Attach an image (or paste one into the message box)",
    removeImage: "Remove image {n}",
    imageAlt: "attached image {n}",
    tooManyImages: "At most {n} images in a message.",
    notAnImage: "{name} is not an image dilm can read (PNG, JPEG, GIF, WebP or BMP, up to 8 MB).",
    knowTitle: "What I know about you",
    refresh: "Refresh",
    memories: "Memories",
    facts: "Facts",
    profile: "Profile",
    adminTitle: "Administration",
    adapters: "Adapter versions",
    colVersion: "Version",
    colScope: "Scope",
    colStatus: "Status",
    colLive: "Live",
    colGate: "Gate",
    colLosses: "Learning curve",
    colActions: "Actions",
    satisfaction: "Satisfaction",
    byDay: "By day",
    byAdapter: "By adapter version",
    whoAdmin: "Admin",
    whoUser: "Signed in as {user}",
    whoLocal: "Local mode (no key needed)",
    you: "You",
    assistant: "dilm",
    answer: "Answer",
    sources: "Sources",
    checks: "Why this answer",
    feedbackGroup: "Feedback on this answer",
    good: "Good answer",
    bad: "Bad answer",
    reasonsLegend: "What was wrong?",
    r_incorrect: "not factually correct",
    r_long: "too long",
    r_offtopic: "off topic",
    r_unhelpful: "not helpful",
    r_language: "wrong language",
    sendReasons: "Send feedback",
    correct: "Correct this answer",
    correctionLabel: "Your correction",
    save: "Save correction",
    cancel: "Cancel",
    regenerate: "Regenerate",
    compareTitle: "Which answer is better?",
    pickFirst: "The first answer is better",
    pickSecond: "The second answer is better",
    thanks: "Thanks, noted.",
    effects: "What changed: {effects}",
    question: "dilm asks: {question}",
    untitled: "(untitled)",
    noSessions: "No conversations yet.",
    nothing: "Nothing yet.",
    del: "Delete",
    delMemory: "Delete memory: {text}",
    delFact: "Delete fact: {text}",
    delProfile: "Remove preference: {text}",
    globalTag: "shared",
    learnedTopics: "Topics: {topics}",
    learnedReasons: "Your rating reasons: {reasons}",
    deleted: "Deleted.",
    noAdapters: "No adapter versions yet.",
    rollback: "Roll back {scope}",
    rolledBack: "{scope} now uses {version}.",
    baseModel: "the base model",
    activate: "Activate",
    activateLabel: "Activate {version}",
    activated: "{version} is live for {scope}.",
    yes: "yes",
    no: "no",
    passed: "passed",
    st_accepted: "accepted",
    st_rejected: "rejected",
    st_deleted: "files deleted",
    noLosses: "no losses logged",
    noData: "No rated answers yet.",
    repeatErrors: "Repeat errors",
    repeatHelp: "Answers that stated a value the same user had already corrected.",
    day: "Day",
    answers: "Answers",
    repeats: "Repeats",
    rate: "Rate",
    noRepeats: "No corrected values yet.",
    overall: "Overall: {pct} positive of {rated} rated answers.",
    chartDay: "Share of positive ratings by day",
    chartAdapter: "Share of positive ratings by adapter version",
    chartLosses: "Training loss per step: {kinds}",
    dismiss: "Dismiss",
    errorStatus: "Error {status}: {message}",
    errorPlain: "Error: {message}",
    networkError: "The server cannot be reached ({message}).",
    badKey: "The key was not accepted.",
    thinking: "…",
  },
  zh: {
    skip: "跳到输入框",
    actAs: "代表用户",
    apply: "应用",
    language: "语言",
    signOut: "更换密钥",
    signInTitle: "登录",
    signInHelp: "粘贴 API 密钥（只保存在本浏览器中）。",
    apiKey: "API 密钥",
    signIn: "登录",
    sessions: "对话",
    newChat: "新对话",
    chat: "聊天",
    message: "消息",
    placeholder: "请输入问题…（回车发送，Shift+回车换行）",
    send: "发送",
    attach: "图片",
    attachHelp: "附加图片（也可以直接粘贴到输入框）",
    removeImage: "移除第 {n} 张图片",
    imageAlt: "附加的第 {n} 张图片",
    tooManyImages: "每条消息最多 {n} 张图片。",
    notAnImage: "{name} 不是 dilm 能读取的图片（PNG、JPEG、GIF、WebP 或 BMP，不超过 8 MB）。",
    knowTitle: "我所了解的你",
    refresh: "刷新",
    memories: "记忆",
    facts: "事实",
    profile: "偏好",
    adminTitle: "管理",
    adapters: "适配器版本",
    colVersion: "版本",
    colScope: "范围",
    colStatus: "状态",
    colLive: "在用",
    colGate: "把关",
    colLosses: "学习曲线",
    colActions: "操作",
    satisfaction: "满意度",
    byDay: "按日期",
    byAdapter: "按适配器版本",
    whoAdmin: "管理员",
    whoUser: "当前用户：{user}",
    whoLocal: "本地模式（无需密钥）",
    you: "你",
    assistant: "dilm",
    answer: "回答",
    sources: "来源",
    checks: "为什么这样回答",
    feedbackGroup: "对这个回答的反馈",
    good: "回答得好",
    bad: "回答得不好",
    reasonsLegend: "哪里不对？",
    r_incorrect: "事实不正确",
    r_long: "太长",
    r_offtopic: "答非所问",
    r_unhelpful: "没有帮助",
    r_language: "语言不对",
    sendReasons: "提交反馈",
    correct: "更正这个回答",
    correctionLabel: "你的更正",
    save: "保存更正",
    cancel: "取消",
    regenerate: "重新生成",
    compareTitle: "哪个回答更好？",
    pickFirst: "第一个回答更好",
    pickSecond: "第二个回答更好",
    thanks: "谢谢，已记录。",
    effects: "变化：{effects}",
    question: "dilm 想确认：{question}",
    untitled: "（无标题）",
    noSessions: "还没有对话。",
    nothing: "暂无。",
    del: "删除",
    delMemory: "删除记忆：{text}",
    delFact: "删除事实：{text}",
    delProfile: "移除偏好：{text}",
    globalTag: "共享",
    learnedTopics: "话题：{topics}",
    learnedReasons: "你的评价理由：{reasons}",
    deleted: "已删除。",
    noAdapters: "还没有适配器版本。",
    rollback: "回滚 {scope}",
    rolledBack: "{scope} 现在使用 {version}。",
    baseModel: "基础模型",
    activate: "启用",
    activateLabel: "启用 {version}",
    activated: "{version} 已在 {scope} 上启用。",
    yes: "是",
    no: "否",
    passed: "通过",
    st_accepted: "已通过",
    st_rejected: "被拒绝",
    st_deleted: "文件已删除",
    noLosses: "没有记录损失",
    noData: "还没有被评价的回答。",
    repeatErrors: "重复错误",
    repeatHelp: "回答中又说出了同一用户已经纠正过的值。",
    day: "日期",
    answers: "回答数",
    repeats: "重复错误",
    rate: "比例",
    noRepeats: "还没有被纠正过的值。",
    overall: "总体：{rated} 个被评价的回答中 {pct} 为好评。",
    chartDay: "每日好评比例",
    chartAdapter: "各适配器版本的好评比例",
    chartLosses: "每步训练损失：{kinds}",
    dismiss: "关闭",
    errorStatus: "错误 {status}：{message}",
    errorPlain: "错误：{message}",
    networkError: "无法连接服务器（{message}）。",
    badKey: "密钥未被接受。",
    thinking: "…",
  },
};

// Reason tags are sent in English (the log's vocabulary) whatever the UI language.
const REASONS = [
  ["r_incorrect", "not factually correct"],
  ["r_long", "too long"],
  ["r_offtopic", "off topic"],
  ["r_unhelpful", "not helpful"],
  ["r_language", "wrong language"],
];

const store = {
  get: (k) => {
    try {
      return localStorage.getItem(`dilm.${k}`);
    } catch {
      return null;
    }
  },
  set: (k, v) => {
    try {
      if (v === null || v === undefined) localStorage.removeItem(`dilm.${k}`);
      else localStorage.setItem(`dilm.${k}`, v);
    } catch {
      /* storage may be disabled: the page still works for this visit */
    }
  },
};

const state = {
  lang: store.get("lang") || ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en"),
  key: store.get("key") || "",
  me: null, // whoami
  actAs: store.get("user") || "default",
  sessionId: null,
  busy: false,
  images: [], // data: URIs attached to the next message
};

function t(key, args = {}) {
  const table = STRINGS[state.lang] || STRINGS.en;
  const s = table[key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, name) => (name in args ? String(args[name]) : `{${name}}`));
}

// Dynamic elements remember their string key, so switching the language re-labels what is already shown.
function tx(el, key, args) {
  el.dataset.i18n = key;
  if (args) el.dataset.i18nArgs = JSON.stringify(args);
  el.textContent = t(key, args);
  return el;
}

function aria(el, key, args) {
  el.dataset.i18nAria = key;
  if (args) el.dataset.i18nAriaArgs = JSON.stringify(args);
  el.setAttribute("aria-label", t(key, args));
  return el;
}

function argsOf(el, attr) {
  const raw = el.dataset[attr];
  if (!raw) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

function applyI18n() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n, argsOf(el, "i18nArgs"));
  for (const el of document.querySelectorAll("[data-i18n-aria]"))
    el.setAttribute("aria-label", t(el.dataset.i18nAria, argsOf(el, "i18nAriaArgs")));
  for (const el of document.querySelectorAll("[data-i18n-placeholder]"))
    el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
  for (const el of document.querySelectorAll("[data-i18n-title]")) el.setAttribute("title", t(el.dataset.i18nTitle));
  $("#lang-select").value = state.lang;
  renderWho();
}

// ---------------------------------------------------------------------------------------------------------
// DOM helpers

const $ = (sel, root = document) => root.querySelector(sel);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

function button(key, onclick, { args, ...attrs } = {}) {
  const b = h("button", { type: "button", ...attrs, onclick });
  return tx(b, key, args);
}

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// ---------------------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(json) {
  const hd = {};
  if (state.key) hd.Authorization = `Bearer ${state.key}`;
  if (json) hd["Content-Type"] = "application/json";
  return hd;
}

async function errorFrom(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body?.error?.message) message = body.error.message;
    else if (body?.detail) message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    /* not JSON: keep the status line */
  }
  const retry = res.headers.get("Retry-After");
  if (res.status === 429 && retry && !message.includes(retry)) message += ` (Retry-After: ${retry} s)`;
  return new ApiError(res.status, message);
}

async function request(method, path, body) {
  try {
    return await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, t("networkError", { message: e.message }));
  }
}

async function api(method, path, body) {
  const res = await request(method, path, body);
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.text();
}

function isAdmin() {
  return state.me?.role === "admin";
}

// The user the page acts for: an admin's choice, or the user key's own user (then the parameter is left out).
function currentUser() {
  return isAdmin() ? state.actAs || "default" : state.me?.user || null;
}

function withUser(path, extra = {}) {
  const params = new URLSearchParams();
  if (isAdmin()) params.set("user", currentUser());
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null) params.set(k, String(v));
  const q = params.toString();
  return q ? `${path}${path.includes("?") ? "&" : "?"}${q}` : path;
}

function userBody(body) {
  return isAdmin() ? { ...body, user: currentUser() } : body;
}

const rows = (x) => (Array.isArray(x) ? x : Array.isArray(x?.data) ? x.data : []);

// Streams one chat turn: calls onDelta(text) for each piece; resolves to the last JSON chunk (id, dilm).
async function streamChat(text, sessionId, onDelta, extra = {}, images = []) {
  // Pictures go as OpenAI content parts: the text, then each image as a data: URI.
  const parts = [{ type: "text", text }, ...images.map((url) => ({ type: "image_url", image_url: { url } }))];
  const content = images.length ? parts : text;
  const body = userBody({ messages: [{ role: "user", content }], stream: true, ...extra });
  if (sessionId) body.session_id = sessionId;
  const res = await request("POST", "/v1/chat/completions", body);
  if (!res.ok) throw await errorFrom(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let last = null;
  const handle = (line) => {
    if (!line.startsWith("data:")) return false;
    const payload = line.slice(5).trim();
    if (payload === "[DONE]") return true;
    if (!payload) return false;
    const chunk = JSON.parse(payload);
    if (chunk.error) throw new ApiError(chunk.error.code || 500, chunk.error.message || JSON.stringify(chunk.error));
    const delta = chunk.choices?.[0]?.delta?.content;
    if (delta) onDelta(delta);
    if (chunk.dilm || (chunk.id && chunk.id !== "pending")) last = chunk;
    return false;
  };
  let finished = false;
  try {
    while (!finished) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      const lines = buffer.split(/\r?\n/);
      buffer = done ? "" : lines.pop();
      for (const line of lines) if (handle(line)) finished = true;
      if (done) break;
    }
  } finally {
    if (!finished) reader.cancel().catch(() => {}); // an error chunk or a bad line: stop reading
  }
  if (!last) throw new ApiError(0, "the stream ended without a final chunk");
  return last;
}

// ---------------------------------------------------------------------------------------------------------
// Errors and notes

function showError(e) {
  const box = $("#errors");
  const text =
    e instanceof ApiError && e.status
      ? t("errorStatus", { status: e.status, message: e.message })
      : t("errorPlain", { message: e?.message || String(e) });
  const item = h("div", { class: "error" }, h("span", { class: "error-text", text }));
  item.append(aria(button("dismiss", () => item.remove(), { class: "icon" }), "dismiss"));
  box.replaceChildren(item);
  console.error(e);
}

function clearErrors() {
  $("#errors").replaceChildren();
}

// Runs an async action; its error is shown, never swallowed. Returns the action's result (undefined on error).
async function guarded(fn) {
  try {
    return await fn();
  } catch (e) {
    showError(e);
    return undefined;
  }
}

function feedbackNote(note, result) {
  note.replaceChildren();
  const effects = result?.effects || [];
  note.append(h("span", {}, effects.length ? t("effects", { effects: effects.join("; ") }) : t("thanks")));
  if (result?.question) note.append(h("strong", { class: "ask" }, ` ${t("question", { question: result.question })}`));
}

// ---------------------------------------------------------------------------------------------------------
// Sign-in

function renderWho() {
  const who = $("#who");
  if (!who) return;
  if (!state.me) {
    who.textContent = "";
    return;
  }
  const parts = [];
  if (state.me.local) parts.push(t("whoLocal"));
  if (isAdmin()) parts.push(t("whoAdmin"));
  else parts.push(t("whoUser", { user: state.me.user }));
  who.textContent = parts.join(" · ");
}

async function start() {
  applyI18n();
  bind();
  let me;
  try {
    me = await api("GET", "/v1/whoami");
  } catch (e) {
    if (e.status === 401) {
      showSignin();
      if (state.key) showError(new ApiError(401, `${t("badKey")} ${e.message}`));
      return;
    }
    showError(e);
    return;
  }
  await signedIn(me);
}

function showSignin() {
  state.me = null;
  renderWho();
  $("#signin").hidden = false;
  $("#app").hidden = true;
  $("#admin").hidden = true;
  $("#user-field").hidden = true;
  $("#signout").hidden = true;
  $("#key-input").focus();
}

async function signedIn(me) {
  state.me = me;
  clearErrors();
  $("#signin").hidden = true;
  $("#app").hidden = false;
  $("#signout").hidden = !!me.local && !state.key;
  $("#user-field").hidden = !isAdmin();
  $("#user-input").value = state.actAs;
  $("#admin").hidden = !isAdmin();
  renderWho();
  newChat();
  await Promise.all([loadSessions(), loadKnowledge(), isAdmin() ? loadAdmin() : null]);
}

// ---------------------------------------------------------------------------------------------------------
// Sessions and messages

function newChat() {
  state.sessionId = null;
  $("#messages").replaceChildren();
  markCurrentSession();
  $("#composer-input").focus();
}

function markCurrentSession() {
  for (const b of document.querySelectorAll("#sessions button")) {
    if (b.dataset.id === state.sessionId) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
}

async function loadSessions() {
  const list = $("#sessions");
  const data = await guarded(() => api("GET", withUser("/v1/sessions")));
  if (data === undefined) return;
  const sessions = rows(data);
  list.replaceChildren();
  if (!sessions.length) list.append(tx(h("li", { class: "muted" }), "noSessions"));
  for (const sess of sessions) {
    const b = h("button", { type: "button", class: "session", "data-id": sess.id, onclick: () => openSession(sess.id) });
    const title = h("span", { class: "title" });
    if (sess.title) title.textContent = sess.title;
    else tx(title, "untitled");
    b.append(title, h("time", { datetime: sess.updated_at || "", text: shortTime(sess.updated_at) }));
    list.append(h("li", {}, b));
  }
  markCurrentSession();
}

function shortTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(state.lang === "zh" ? "zh-CN" : "en", { dateStyle: "short", timeStyle: "short" });
}

async function openSession(id) {
  const data = await guarded(() => api("GET", withUser(`/v1/sessions/${encodeURIComponent(id)}/messages`)));
  if (data === undefined) return;
  state.sessionId = id;
  markCurrentSession();
  const box = $("#messages");
  box.replaceChildren();
  let question = "";
  for (const m of rows(data)) {
    if (m.role === "user") {
      question = m.content;
      const bubble = userBubble(m.content);
      box.append(bubble);
      showStoredImages(bubble, m.meta?.images || []);
    } else if (m.role === "assistant") {
      const a = answerView({ id: m.id, question, sessionId: id });
      a.setText(m.content);
      a.setCitations(m.meta?.citations || []);
      a.setChecks(m.meta?.checks);
      const ratings = (m.feedback || []).filter((f) => f.kind === "rating" && f.rating);
      if (ratings.length) a.setRated(ratings[ratings.length - 1].rating);
      a.finish();
      box.append(a.el);
    }
  }
  box.scrollTop = box.scrollHeight;
}

function userBubble(text, images = []) {
  const el = h("div", { class: "msg user" });
  el.append(tx(h("span", { class: "who-tag" }), "you"), h("div", { class: "text", dir: "auto", text }));
  images.forEach((src, i) => el.append(picture(src, i)));
  return el;
}

function picture(src, i) {
  return h("img", { class: "picture", src, alt: t("imageAlt", { n: i + 1 }) });
}

// A logged message's pictures, fetched with the page's key (an <img src> could not send it).
async function showStoredImages(bubble, images) {
  for (const [i, im] of images.entries()) {
    if (!im.sha256) continue;
    try {
      const res = await request("GET", withUser(`/v1/images/${im.sha256}`));
      if (!res.ok) continue; // forgotten since: the text stays
      bubble.append(picture(URL.createObjectURL(await res.blob()), i));
    } catch {
      /* the picture is an extra: the conversation shows without it */
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Attaching pictures: the button, or pasting an image into the message box

const MAX_IMAGES = 4;
const MAX_IMAGE_BYTES = 8 * 1024 * 1024;

async function attachFiles(files) {
  for (const file of files) {
    if (state.images.length >= MAX_IMAGES) {
      showError(new ApiError(0, t("tooManyImages", { n: MAX_IMAGES })));
      break;
    }
    if (!file.type.startsWith("image/") || file.size > MAX_IMAGE_BYTES) {
      showError(new ApiError(0, t("notAnImage", { name: file.name || "image" })));
      continue;
    }
    state.images.push(await dataUrl(file));
  }
  renderAttachments();
}

function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

function renderAttachments() {
  const list = $("#attachments");
  list.replaceChildren(
    ...state.images.map((src, i) => {
      const drop = () => {
        state.images.splice(i, 1);
        renderAttachments();
      };
      const remove = aria(h("button", { type: "button", class: "remove", onclick: drop, text: "×" }), "removeImage", {
        n: i + 1,
      });
      return h("li", {}, picture(src, i), remove);
    }),
  );
}

// One answer: its text (live while streaming), citations, feedback controls.
function answerView({ id = null, question, sessionId }) {
  const el = h("article", { class: "msg answer", "aria-busy": "true" });
  const label = tx(h("span", { class: "who-tag" }), "assistant");
  const text = h("div", { class: "text", dir: "auto", "aria-live": "polite", "aria-atomic": "false" });
  const cites = h("div", { class: "citations", hidden: true });
  const note = h("p", { class: "note", role: "status" });
  const view = { el, id, question, sessionId, text: "" };
  el.append(label, text, cites);
  if (id) el.dataset.id = id;

  view.append = (delta) => {
    view.text += delta;
    text.textContent = view.text;
  };
  view.setText = (value) => {
    view.text = value;
    text.textContent = value;
  };
  view.setCitations = (list) => {
    cites.replaceChildren();
    if (!list?.length) {
      cites.hidden = true;
      return;
    }
    const ul = h("ul");
    for (const c of list) ul.append(h("li", { dir: "auto", text: citationText(c) }));
    cites.append(tx(h("h4"), "sources"), ul);
    cites.hidden = false;
  };
  view.setChecks = (checks) => {
    el.querySelector("details.checks")?.remove();
    if (!checks || typeof checks !== "object" || !Object.keys(checks).length) return;
    const details = h("details", { class: "checks" }, tx(h("summary"), "checks"));
    details.append(h("pre", { text: JSON.stringify(checks, null, 2) }));
    cites.after(details);
  };
  view.setRated = (rating) => {
    up.setAttribute("aria-pressed", String(rating > 0));
    down.setAttribute("aria-pressed", String(rating < 0));
  };
  view.fail = () => {
    el.setAttribute("aria-busy", "false");
    el.classList.add("failed");
  };
  view.finish = () => {
    el.setAttribute("aria-busy", "false");
    if (view.id) el.dataset.id = view.id;
    el.append(actions, reasons, editor, note);
  };

  const send = (body) =>
    guarded(async () => {
      const result = await api("POST", "/v1/feedback", userBody({ message_id: view.id, ...body }));
      feedbackNote(note, result);
      loadKnowledge();
      return result;
    });

  // Thumbs up / down; thumbs down opens the reason tags.
  const up = aria(h("button", { type: "button", class: "icon", "aria-pressed": "false" }, thumb(false)), "good");
  const down = aria(h("button", { type: "button", class: "icon", "aria-pressed": "false" }, thumb(true)), "bad");
  up.addEventListener("click", async () => {
    if (await send({ rating: 1 })) view.setRated(1);
  });
  down.addEventListener("click", () => {
    reasons.hidden = !reasons.hidden;
    down.setAttribute("aria-expanded", String(!reasons.hidden));
    if (!reasons.hidden) reasons.querySelector("input")?.focus();
  });
  down.setAttribute("aria-expanded", "false");

  const reasons = h("form", { class: "reasons", hidden: true });
  const fieldset = h("fieldset", {}, tx(h("legend"), "reasonsLegend"));
  for (const [key, tag] of REASONS) {
    const input = h("input", { type: "checkbox", name: "reason", value: tag });
    fieldset.append(h("label", { class: "tag" }, input, tx(h("span"), key)));
  }
  reasons.append(fieldset, tx(h("button", { type: "submit" }), "sendReasons"));
  reasons.addEventListener("submit", async (e) => {
    e.preventDefault();
    const tags = [...reasons.querySelectorAll("input:checked")].map((i) => i.value);
    const body = { rating: -1 };
    if (tags.length) body.reason = tags;
    if (await send(body)) {
      view.setRated(-1);
      reasons.hidden = true;
      down.setAttribute("aria-expanded", "false");
      down.focus();
    }
  });

  // The correction editor: the answer's text, edited.
  const editor = h("form", { class: "editor", hidden: true });
  const areaId = `fix-${Math.random().toString(36).slice(2)}`;
  const area = h("textarea", { id: areaId, rows: "3", dir: "auto" });
  editor.append(
    tx(h("label", { for: areaId }), "correctionLabel"),
    area,
    h(
      "div",
      { class: "row" },
      tx(h("button", { type: "submit", class: "primary" }), "save"),
      button("cancel", () => {
        editor.hidden = true;
        fix.focus();
      }),
    ),
  );
  editor.addEventListener("submit", async (e) => {
    e.preventDefault();
    const correction = area.value.trim();
    if (!correction) return;
    if (await send({ correction })) {
      editor.hidden = true;
      fix.focus();
    }
  });
  const fix = button("correct", () => {
    editor.hidden = !editor.hidden;
    if (!editor.hidden) {
      area.value = view.text;
      area.focus();
    }
  });

  const again = button("regenerate", () => regenerate(view, again));
  const actions = h("div", { class: "actions", role: "group" }, up, down, fix, again);
  aria(actions, "feedbackGroup");
  return view;
}

// A thumb drawn inline (no emoji font needed); the button's aria-label names it.
function thumb(down) {
  const svg = s("svg", { viewBox: "0 0 24 24", width: 18, height: 18, "aria-hidden": "true", focusable: "false" });
  if (down) svg.setAttribute("style", "transform: rotate(180deg)");
  svg.append(
    s("path", {
      fill: "currentColor",
      d:
        "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 " +
        "7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z",
    }),
  );
  return svg;
}

function citationText(c) {
  if (typeof c === "string") return c;
  for (const k of ["text", "statement", "content", "snippet", "title"]) if (c?.[k]) return String(c[k]);
  if (c?.subject) return [c.subject, c.relation, c.object].filter(Boolean).join(" · ");
  return JSON.stringify(c);
}

// One streamed turn into a new answer view; resolves to the view (or undefined after an error, shown).
async function ask(question, sessionId, extra, images = []) {
  const box = $("#messages");
  box.append(userBubble(question, images));
  const view = answerView({ question, sessionId });
  box.append(view.el);
  box.scrollTop = box.scrollHeight;
  setBusy(true);
  try {
    const last = await streamChat(
      question,
      sessionId,
      (delta) => {
        view.append(delta);
        box.scrollTop = box.scrollHeight;
      },
      extra,
      images,
    );
    view.id = last.id;
    view.sessionId = last.dilm?.session_id || sessionId;
    view.setCitations(last.dilm?.citations || []);
    view.setChecks(last.dilm?.checks);
    view.finish();
    return view;
  } catch (e) {
    view.fail();
    showError(e);
    return undefined;
  } finally {
    setBusy(false);
  }
}

function setBusy(busy) {
  state.busy = busy;
  $("#send").disabled = busy;
  $("#messages").setAttribute("aria-busy", String(busy));
}

async function sendMessage() {
  const input = $("#composer-input");
  const text = input.value.trim();
  const images = state.images;
  if ((!text && !images.length) || state.busy) return;
  clearErrors();
  input.value = "";
  state.images = [];
  renderAttachments();
  const view = await ask(text, state.sessionId, undefined, images);
  if (!view) {
    if (!input.value) input.value = text; // not lost: the user can send it again
    if (!state.images.length) state.images = images;
    renderAttachments();
    return;
  }
  if (!view.el.isConnected) return; // the user moved on (new chat, other user) while it streamed
  const isNew = state.sessionId !== view.sessionId;
  state.sessionId = view.sessionId;
  if (isNew) await loadSessions();
  loadKnowledge();
}

// Regenerate: the same question again in the same session (sampled, so it can differ), then pick the better.
async function regenerate(first, btn) {
  if (state.busy || !first.id) return;
  btn.disabled = true;
  clearErrors();
  const second = await ask(first.question, first.sessionId, {
    temperature: 0.9,
    seed: Math.floor(Math.random() * 2 ** 31),
  });
  btn.disabled = false;
  if (!second || !second.el.isConnected) return;
  state.sessionId = second.sessionId;
  const box = h("section", { class: "compare" });
  const title = tx(h("h4"), "compareTitle");
  const note = h("p", { class: "note", role: "status" });
  const pick = (better, worse) =>
    guarded(async () => {
      const result = await api("POST", "/v1/feedback", userBody({ message_id: worse.id, preferred: better.text }));
      choices.remove();
      feedbackNote(note, result);
      better.el.classList.add("preferred");
      loadKnowledge();
    });
  const choices = h(
    "div",
    { class: "row" },
    button("pickFirst", () => pick(first, second)),
    button("pickSecond", () => pick(second, first)),
  );
  box.append(title, choices, note);
  second.el.after(box);
}

// ---------------------------------------------------------------------------------------------------------
// What I know about you

async function loadKnowledge() {
  if (!state.me) return;
  const user = currentUser();
  const [mems, facts, prof] = await Promise.all([
    guarded(() => api("GET", withUser("/v1/memories"))),
    guarded(() => api("GET", withUser("/v1/facts"))),
    guarded(() => api("GET", withUser("/v1/profile"))),
  ]);
  if (user !== currentUser()) return; // the user changed meanwhile
  if (mems !== undefined) renderMemories(rows(mems));
  if (facts !== undefined) renderFacts(rows(facts));
  if (prof !== undefined) renderProfile(prof);
}

function itemRow(text, isGlobal, delKey, onDelete) {
  const li = h("li", { class: "item" });
  li.append(h("span", { class: "item-text", dir: "auto", text }));
  if (isGlobal) li.append(tx(h("span", { class: "badge" }), "globalTag"));
  if (onDelete && (!isGlobal || isAdmin())) {
    const b = button("del", async () => {
      b.disabled = true;
      const ok = await guarded(async () => {
        await onDelete();
        return true;
      });
      if (ok) li.remove();
      else b.disabled = false;
      loadKnowledge();
    });
    aria(b, delKey, { text });
    li.append(b);
  }
  return li;
}

function emptyRow(list) {
  if (!list.children.length) list.append(tx(h("li", { class: "muted" }), "nothing"));
}

function renderMemories(items) {
  const list = $("#memories");
  list.replaceChildren();
  for (const m of items) {
    const isGlobal = m.scope === "global";
    list.append(
      itemRow(m.text, isGlobal, "delMemory", () =>
        api("DELETE", withUser(`/v1/memories/${encodeURIComponent(m.id)}`, isGlobal ? { global: "true" } : {})),
      ),
    );
  }
  emptyRow(list);
}

function renderFacts(items) {
  const list = $("#facts");
  list.replaceChildren();
  for (const f of items) {
    const isGlobal = f.scope === "global";
    const text = [f.subject, f.relation, f.object].join(" · ");
    list.append(
      itemRow(text, isGlobal, "delFact", () =>
        api("DELETE", withUser(`/v1/facts/${encodeURIComponent(f.id)}`, isGlobal ? { global: "true" } : {})),
      ),
    );
  }
  emptyRow(list);
}

function renderProfile(data) {
  const list = $("#profile");
  list.replaceChildren();
  const profile = data?.profile || {};
  for (const [k, v] of Object.entries(profile)) {
    if (v === null || v === undefined) continue;
    const value = Array.isArray(v) ? v.join(", ") : typeof v === "object" ? JSON.stringify(v) : String(v);
    list.append(itemRow(`${k}: ${value}`, false, "delProfile", () => api("PATCH", "/v1/profile", userBody({ [k]: null }))));
  }
  emptyRow(list);
  const learned = data?.learned || {};
  const out = [];
  const fmt = (x) =>
    Array.isArray(x)
      ? x.map((i) => (Array.isArray(i) ? i.join(" ") : typeof i === "object" ? JSON.stringify(i) : i)).join(", ")
      : typeof x === "object"
        ? Object.entries(x)
            .map(([a, b]) => `${a} (${b})`)
            .join(", ")
        : String(x);
  if (learned.topics && Object.keys(learned.topics).length) out.push(t("learnedTopics", { topics: fmt(learned.topics) }));
  if (learned.reasons && Object.keys(learned.reasons).length)
    out.push(t("learnedReasons", { reasons: fmt(learned.reasons) }));
  $("#learned").textContent = out.join(" · ");
}

// ---------------------------------------------------------------------------------------------------------
// Admin: adapters and satisfaction

async function loadAdmin() {
  if (!isAdmin()) return;
  await Promise.all([loadAdapters(), loadSatisfaction(), loadRepeatErrors()]);
}

function fmtNum(x) {
  if (typeof x === "number") return Number.isInteger(x) ? String(x) : x.toFixed(3);
  if (x === null || x === undefined) return "–";
  return typeof x === "object" ? JSON.stringify(x) : String(x);
}

async function loadAdapters() {
  const data = await guarded(() => api("GET", "/v1/adapters"));
  if (data === undefined) return;
  const versions = rows(data);
  const body = $("#adapters tbody");
  body.replaceChildren();
  if (!versions.length) {
    const td = tx(h("td", { colspan: "7", class: "muted" }), "noAdapters");
    body.append(h("tr", {}, td));
  }
  for (const a of versions) {
    const gate = a.info?.gate || {};
    const gateCell = h("td", { class: "gate" });
    const reasons = gate.reasons || [];
    if (reasons.length) {
      const ul = h("ul");
      for (const r of reasons) ul.append(h("li", { text: r }));
      gateCell.append(ul);
    } else if (a.status === "accepted") gateCell.append(tx(h("span"), "passed"));
    const before = gate.before || {};
    const after = gate.after || {};
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    if (keys.length) {
      const dl = h("dl", { class: "metrics" });
      for (const k of keys) dl.append(h("dt", { text: k }), h("dd", { text: `${fmtNum(before[k])} → ${fmtNum(after[k])}` }));
      gateCell.append(dl);
    }
    const losses = a.info?.losses || {};
    const lossCell = h("td");
    if (Object.keys(losses).length) lossCell.append(lineChart(losses, { width: 220, height: 90, label: "chartLosses" }));
    else lossCell.append(tx(h("span", { class: "muted" }), "noLosses"));
    const acts = h("td");
    if (a.status === "accepted" && !a.live && !a.deleted_at) {
      const b = button("activate", () =>
        guarded(async () => {
          await api("POST", `/v1/adapters/${encodeURIComponent(a.version)}/activate`);
          await loadAdapters();
          adminNote(t("activated", { version: a.version, scope: a.scope }));
        }),
      );
      aria(b, "activateLabel", { version: a.version });
      acts.append(b);
    }
    const live = tx(h("td", { class: a.live ? "live" : "" }), a.live ? "yes" : "no");
    body.append(
      h(
        "tr",
        { "data-version": a.version },
        h("th", { scope: "row", text: a.version }),
        h("td", { text: a.scope }),
        statusCell(a),
        live,
        gateCell,
        lossCell,
        acts,
      ),
    );
  }
  const box = $("#rollbacks");
  box.replaceChildren();
  const scopes = [...new Set(versions.map((a) => a.scope))].filter((x) => x && x !== "reward").sort();
  for (const scope of scopes) {
    box.append(
      button(
        "rollback",
        () =>
          guarded(async () => {
            const res = await api("POST", "/v1/adapters/rollback", { scope });
            const version = res?.live?.version ?? null; // {scope, live: the now-live version or null (base model)}
            adminNote(t("rolledBack", { scope, version: version || t("baseModel") }));
            await loadAdapters();
          }),
        { args: { scope } },
      ),
    );
  }
}

function statusCell(a) {
  const td = h("td", { class: `status ${a.status}` });
  td.append(STRINGS.en[`st_${a.status}`] ? tx(h("span"), `st_${a.status}`) : h("span", { text: a.status }));
  if (a.deleted_at) td.append(" (", tx(h("span"), "st_deleted"), ")");
  return td;
}

function adminNote(text) {
  const el = $("#admin-note");
  if (el) el.textContent = text;
}

async function loadSatisfaction() {
  const data = await guarded(() => api("GET", "/v1/stats/satisfaction"));
  if (data === undefined) return;
  const byDay = data.by_day || [];
  const byAdapter = data.by_adapter || [];
  const rated = data.rated ?? byDay.reduce((n, r) => n + (r.rated || 0), 0);
  const positive = data.positive ?? byDay.reduce((n, r) => n + (r.positive || 0), 0);
  const overall = $("#sat-overall");
  if (rated) {
    const share = data.satisfaction ?? positive / rated;
    overall.dataset.i18n = "overall";
    overall.dataset.i18nArgs = JSON.stringify({ pct: `${Math.round(share * 100)}%`, rated });
    overall.textContent = t("overall", { pct: `${Math.round(share * 100)}%`, rated });
  } else tx(overall, "noData");
  $("#sat-day").replaceChildren(
    byDay.length ? satLine(byDay) : tx(h("p", { class: "muted" }), "noData"),
  );
  $("#sat-adapter").replaceChildren(
    byAdapter.length ? barChart(byAdapter, { label: "chartAdapter" }) : tx(h("p", { class: "muted" }), "noData"),
  );
}

async function loadRepeatErrors() {
  const data = await guarded(() => api("GET", "/v1/stats/repeat-errors"));
  if (data === undefined) return;
  const body = $("#repeat-table tbody");
  const rows = (data.by_day || []).map((r) =>
    h("tr", {}, h("td", {}, r.key), h("td", {}, String(r.answers)), h("td", {}, String(r.repeats)),
      h("td", {}, r.rate == null ? "—" : `${(r.rate * 100).toFixed(1)}%`)),
  );
  body.replaceChildren(...(rows.length ? rows : [h("tr", {}, tx(h("td", { colspan: 4, class: "muted" }), "noRepeats"))]));
}

function satLine(items) {
  if (items.length === 1) return barChart(items, { label: "chartDay" });
  return lineChart(
    { satisfaction: items.map((r) => r.satisfaction ?? 0) },
    { width: 360, height: 160, label: "chartDay", yMin: 0, yMax: 1, xLabels: items.map((r) => r.key) },
  );
}

// ---------------------------------------------------------------------------------------------------------
// Inline SVG charts

const COLORS = ["#1f6feb", "#d9480f", "#2f9e44", "#9c36b5", "#e8590c", "#0c8599"];

function chartSvg(width, height, labelKey, args) {
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "chart" });
  const title = s("title", {}, t(labelKey, args));
  svg.append(title);
  svg.setAttribute("aria-label", t(labelKey, args));
  return svg;
}

// series: {name: [numbers]}; x is the step index.
function lineChart(series, { width, height, label, yMin, yMax, xLabels }) {
  const names = Object.keys(series);
  const all = names.flatMap((n) => (series[n] || []).filter((v) => typeof v === "number" && Number.isFinite(v)));
  const svg = chartSvg(width, height, label, { kinds: names.join(", ") });
  const pad = { l: 34, r: 8, t: 8, b: xLabels ? 30 : 16 };
  const lo = yMin ?? Math.min(...all, 0);
  let hi = yMax ?? Math.max(...all, 0);
  if (hi === lo) hi = lo + 1;
  const longest = Math.max(...names.map((n) => (series[n] || []).length), 1);
  const x = (i) => pad.l + (longest === 1 ? 0.5 : i / (longest - 1)) * (width - pad.l - pad.r);
  const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (height - pad.t - pad.b);
  svg.append(
    s("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: height - pad.b, class: "axis" }),
    s("line", { x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b, class: "axis" }),
    s("text", { x: pad.l - 4, y: pad.t + 8, "text-anchor": "end", class: "tick" }, fmtNum(hi)),
    s("text", { x: pad.l - 4, y: height - pad.b, "text-anchor": "end", class: "tick" }, fmtNum(lo)),
  );
  names.forEach((name, k) => {
    const values = series[name] || [];
    const pts = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const color = COLORS[k % COLORS.length];
    svg.append(s("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2, class: "series" }));
    values.forEach((v, i) => {
      const dot = s("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: values.length > 30 ? 1 : 2.5, fill: color });
      dot.append(s("title", {}, `${name} ${xLabels ? xLabels[i] : i + 1}: ${fmtNum(v)}`));
      svg.append(dot);
    });
    if (names.length > 1 || !xLabels)
      svg.append(s("text", { x: width - pad.r, y: pad.t + 10 + 11 * k, "text-anchor": "end", fill: color, class: "legend" }, name));
  });
  if (xLabels?.length) {
    svg.append(s("text", { x: x(0), y: height - 8, "text-anchor": "start", class: "tick" }, xLabels[0]));
    if (xLabels.length > 1)
      svg.append(s("text", { x: x(xLabels.length - 1), y: height - 8, "text-anchor": "end", class: "tick" }, xLabels.at(-1)));
  }
  return svg;
}

// items: [{key, rated, positive, satisfaction}] as bars of satisfaction (0..1).
function barChart(items, { label }) {
  const width = Math.max(200, 60 * items.length + 40);
  const height = 160;
  const svg = chartSvg(width, height, label);
  const pad = { l: 30, r: 8, t: 16, b: 30 };
  const band = (width - pad.l - pad.r) / items.length;
  const y = (v) => pad.t + (1 - v) * (height - pad.t - pad.b);
  svg.append(
    s("line", { x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b, class: "axis" }),
    s("text", { x: pad.l - 4, y: pad.t + 4, "text-anchor": "end", class: "tick" }, "100%"),
    s("text", { x: pad.l - 4, y: height - pad.b, "text-anchor": "end", class: "tick" }, "0%"),
  );
  items.forEach((r, i) => {
    const v = Math.max(0, Math.min(1, r.satisfaction ?? 0));
    const x0 = pad.l + i * band + band * 0.15;
    const bar = s("rect", {
      x: x0.toFixed(1),
      y: y(v).toFixed(1),
      width: (band * 0.7).toFixed(1),
      height: (height - pad.b - y(v)).toFixed(1),
      fill: COLORS[0],
      class: "bar",
    });
    bar.append(s("title", {}, `${r.key}: ${Math.round(v * 100)}% (${r.positive}/${r.rated})`));
    svg.append(
      bar,
      s("text", { x: (x0 + band * 0.35).toFixed(1), y: (y(v) - 3).toFixed(1), "text-anchor": "middle", class: "tick" }, `${Math.round(v * 100)}%`),
      s("text", { x: (x0 + band * 0.35).toFixed(1), y: height - 12, "text-anchor": "middle", class: "tick" }, String(r.key ?? "base")),
    );
  });
  return svg;
}

// ---------------------------------------------------------------------------------------------------------
// Wiring

function bind() {
  $("#lang-select").addEventListener("change", (e) => {
    state.lang = e.target.value;
    store.set("lang", state.lang);
    applyI18n();
  });
  $("#key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = $("#key-input").value.trim();
    if (!key) return;
    state.key = key;
    clearErrors();
    const me = await guarded(() => api("GET", "/v1/whoami"));
    if (me) {
      store.set("key", key); // remembered once the server accepted it
      $("#key-input").value = "";
      await signedIn(me);
    } else {
      state.key = "";
      $("#key-input").focus();
    }
  });
  $("#signout").addEventListener("click", () => {
    state.key = "";
    store.set("key", null);
    showSignin();
  });
  const applyUser = async () => {
    const user = $("#user-input").value.trim() || "default";
    $("#user-input").value = user;
    if (user === state.actAs) return;
    state.actAs = user;
    store.set("user", user);
    newChat();
    await Promise.all([loadSessions(), loadKnowledge()]);
  };
  $("#user-apply").addEventListener("click", applyUser);
  $("#user-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      applyUser();
    }
  });
  $("#new-chat").addEventListener("click", () => {
    clearErrors();
    newChat();
  });
  $("#composer").addEventListener("submit", (e) => {
    e.preventDefault();
    sendMessage();
  });
  $("#attach").addEventListener("click", () => $("#attach-input").click());
  $("#attach-input").addEventListener("change", async (e) => {
    await attachFiles([...e.target.files]);
    e.target.value = ""; // the same file can be attached again
  });
  $("#composer-input").addEventListener("paste", (e) => {
    const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) {
      e.preventDefault();
      attachFiles(files);
    }
  });
  $("#composer-input").addEventListener("keydown", (e) => {
    // Enter sends; Shift+Enter is a newline; an IME composing Chinese keeps its Enter.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      sendMessage();
    }
  });
  $("#know-refresh").addEventListener("click", () => {
    clearErrors();
    loadKnowledge();
  });
  $("#admin-refresh").addEventListener("click", () => {
    clearErrors();
    loadAdmin();
  });
}

// For tests and the console: the page's API helpers, with the page's key.
window.dilm = { api, guarded, state };

start();
