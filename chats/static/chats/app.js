// The chat page: REST for chats, history and pickers; one WebSocket per open chat for streamed turns.
import { marked } from "./vendor/marked-18.2.1.esm.js";
import DOMPurify from "./vendor/dompurify-3.4.18.es.mjs";

const $ = (selector) => document.querySelector(selector);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
// A message sent is `pending` until the server says its turn started; `turn` is the turn the server runs.
const state = { chats: [], chat: null, socket: null, pending: null, turn: null, providers: [], servers: [] };

async function api(path, options = {}) {
  const response = await fetch(path, {
    credentials: "same-origin",
    ...options,
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, ...(options.headers || {}) },
  });
  if (response.status === 204) return null;
  const body = await response.json();
  if (!response.ok) {
    const error = new Error(body.error ? body.error.message : response.statusText);
    error.status = response.status;
    error.code = body.error ? body.error.code : "";
    throw error;
  }
  return body;
}

// Model output is untrusted: Markdown is rendered, then sanitised before it touches the DOM. It may not fetch
// anything by itself either: a prompt-injected reply could put chat data in an image URL. Remote images become
// links the reader may follow; other remote media sources are dropped. (The page's CSP blocks such loads too;
// this keeps the reply readable and quiet.) Inline styles would only be blocked by the CSP, so they go as well.
const markdown = (text) => DOMPurify.sanitize(marked.parse(text || ""), { FORBID_TAGS: ["style"], FORBID_ATTR: ["style"] });

function isLocalUrl(url) {
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "data:" || parsed.origin === location.origin;
  } catch {
    return false;
  }
}

function linkForImage(image) {
  const url = image.getAttribute("src");
  const link = image.ownerDocument.createElement("a");
  link.href = url;
  link.title = url;
  link.className = "remote-image";
  link.textContent = `🖼 ${image.getAttribute("alt") || url}`;
  return link;
}

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
    return;
  }
  if (node.nodeName === "IMG" && node.hasAttribute("src") && !isLocalUrl(node.getAttribute("src"))) {
    node.replaceWith(linkForImage(node)); // DOMPurify visits the new link next, so it gets the rule above
    return;
  }
  node.removeAttribute("srcset"); // a candidate list; Markdown never makes one
  for (const name of ["src", "poster", "background", "href", "xlink:href"]) {
    const value = node.getAttribute(name);
    if (value !== null && !isLocalUrl(value)) node.removeAttribute(name);
  }
});

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function scrollDown() {
  const box = $("#messages");
  box.scrollTop = box.scrollHeight;
}

function setStatus(text) {
  $("#status").textContent = text || "";
}

// --- chats -----------------------------------------------------------------------------------

async function loadChats() {
  state.chats = (await api("/api/chats?page_size=200")).results;
  renderChatList();
}

function renderChatList() {
  const list = $("#chat-list");
  list.replaceChildren();
  for (const chat of state.chats) {
    const item = element("li");
    item.dataset.id = chat.id;
    if (state.chat && state.chat.id === chat.id) item.classList.add("active");
    const link = element("a", "", chat.title || "New chat");
    link.href = `#chat-${chat.id}`;
    link.addEventListener("click", (event) => { event.preventDefault(); openChat(chat.id); });
    const rename = element("button", "rename", "✎");
    rename.title = "Rename";
    rename.addEventListener("click", () => renameChat(chat));
    const remove = element("button", "delete", "🗑");
    remove.title = "Delete";
    remove.addEventListener("click", () => deleteChat(chat));
    item.append(link, rename, remove);
    list.append(item);
  }
}

async function newChat() {
  const chat = await api("/api/chats", { method: "POST", body: JSON.stringify({}) });
  state.chats.unshift(chat);
  await openChat(chat.id);
}

async function renameChat(chat) {
  const title = prompt("Rename chat", chat.title);
  if (title === null) return;
  Object.assign(chat, await api(`/api/chats/${chat.id}`, { method: "PATCH", body: JSON.stringify({ title }) }));
  renderChatList();
}

async function deleteChat(chat) {
  if (!confirm(`Delete "${chat.title || "New chat"}"?`)) return;
  await api(`/api/chats/${chat.id}`, { method: "DELETE" });
  state.chats = state.chats.filter((c) => c.id !== chat.id);
  if (state.chat && state.chat.id === chat.id) {
    state.chat = null;
    if (state.socket) state.socket.close();
    $("#messages").replaceChildren();
    enableComposer(false);
  }
  renderChatList();
}

async function openChat(id) {
  state.chat = state.chats.find((c) => c.id === id) || (await api(`/api/chats/${id}`));
  location.hash = `chat-${id}`;
  state.turn = state.pending = null;  // another chat's; this chat's own running turn is announced by `ready`
  renderChatList();
  applyChatDefaults();
  await loadHistory();
  connect();
}

// --- history ---------------------------------------------------------------------------------

async function loadHistory() {
  const box = $("#messages");
  box.replaceChildren();
  let page = `/api/chats/${state.chat.id}/messages?page_size=200`;
  const messages = [];
  while (page) {
    const body = await api(page);
    messages.push(...body.results);
    page = body.next;
  }
  let asked = "";  // the user's words a failed reply answered: its Retry sends them again
  for (const message of messages) {
    if (message.role === "user") asked = textOf(message.content.slice(0, 1));
    renderStoredMessage(message, asked);
  }
  scrollDown();
}

function renderStoredMessage(message, asked = "") {
  const box = $("#messages");
  if (message.role === "user") {
    box.append(storedUserBubble(message.content));
  } else if (message.role === "assistant") {
    const text = textOf(message.content);
    if (text) {
      const bubble = element("div", "msg assistant");
      bubble.innerHTML = markdown(text);
      if (["error", "cancelled"].includes(message.finish_reason)) bubble.classList.add("partial");
      if (hasUsage(message)) bubble.append(usageLine(message));
      box.append(bubble);
    }
    if (message.finish_reason === "error") box.append(failedReply(message.error_message || "the reply did not finish.", asked));
    const executions = new Map(message.tool_executions.map((e) => [e.tool_call_id, e]));
    for (const block of message.content.filter((b) => b.type === "tool_call")) {
      const card = toolCard(block.id, block.name, "", block.arguments);
      const run = executions.get(block.id);
      if (run) finishToolCard(card, run.is_error, resultText(run.result), run.duration_ms);
      box.append(card);
    }
  }
}

// The usage line of one reply, the same live (from its `usage` frame) and after a reload (from the stored message).
const hasUsage = (u) => Boolean(u.input_tokens || u.output_tokens || Number(u.cost));
function usageLine(u) {
  const parts = [u.provider, u.model, `${u.input_tokens} in / ${u.output_tokens} out tokens`, `$${Number(u.cost || 0).toFixed(6)}`];
  return element("div", "usage", parts.filter(Boolean).join(" · "));
}

// A reply that failed: why, and a Retry that sends the user's message again (live and after a reload alike).
function failedReply(reason, asked) {
  const box = element("div", "msg failed");
  box.setAttribute("role", "alert");
  box.append(element("span", "failed-reason", `Reply failed: ${reason}`));
  if (asked) {
    const retry = element("button", "retry", "Retry");
    retry.type = "button";
    retry.addEventListener("click", () => {
      if (state.pending || state.turn) return;
      $("#input").value = asked;
      send();
    });
    box.append(retry);
  }
  return box;
}

const textOf = (content) => content.filter((b) => b.type === "text").map((b) => b.text).join("");
const resultText = (blocks) => (blocks || []).map((b) => b.text ?? JSON.stringify(b)).join("\n");

function toolCard(id, name, server, args) {
  const card = element("details", "tool running");
  card.dataset.callId = id;
  const summary = element("summary");
  summary.append(element("strong", "", `🔧 ${name}`), element("span", "state", "running…"));
  card.append(summary, element("div", "label", "Arguments"), element("pre", "args", JSON.stringify(args, null, 2)));
  return card;
}

function finishToolCard(card, isError, content, durationMs) {
  card.classList.remove("running");
  card.querySelector(".progress")?.remove();
  card.classList.add(isError ? "error" : "ok");
  card.querySelector(".state").textContent = `${isError ? "error" : "done"} · ${durationMs} ms`;
  card.append(element("div", "label", isError ? "Error" : "Result"), element("pre", "result", content));
}

// A running call's progress, as its server reports it: a bar (indeterminate without a total) and its message.
function showProgress(card, event) {
  let box = card.querySelector(".progress");
  if (!box) {
    box = element("span", "progress");
    box.append(element("progress"), element("span", "progress-message"));
    card.querySelector("summary").append(box);
  }
  const bar = box.querySelector("progress");
  if (event.total) {
    bar.max = event.total;
    bar.value = Math.min(event.progress, event.total);
  } else {
    bar.removeAttribute("value");
  }
  const counted = event.total ? `${event.progress} / ${event.total}` : `${event.progress}`;
  box.querySelector(".progress-message").textContent = event.message || counted;
}

// --- approvals: a tool call that waits for the user's yes ----------------------------------------

function cardFor(callId, name, args) {
  let card = document.querySelector(`#messages .tool[data-call-id="${CSS.escape(callId)}"]`);
  if (!card) {
    card = toolCard(callId, name, "", args);
    $("#messages").append(card);
  }
  if (state.turn) state.turn.cards[callId] = card;
  return card;
}

function askApproval(event) {
  const card = cardFor(event.tool_call_id, `${event.server}__${event.tool}`, event.arguments);
  if (card.querySelector(".approval")) return; // asked again after a reconnect
  card.open = true;
  card.classList.add("waiting");
  card.querySelector(".state").textContent = "waiting for your approval";
  const panel = element("div", "approval");
  panel.dataset.approvalId = event.approval_id;
  if (event.tool === "sampling/createMessage") {
    // A server asks the model to think: show what it would send.
    const asked = (event.arguments.messages || []).map((m) => `${m.role}: ${m.text}`).join("\n");
    panel.append(element("p", "", `${event.server} asks the model (at most ${event.arguments.max_tokens} tokens):`));
    if (event.arguments.system_prompt) panel.append(element("pre", "args", `system: ${event.arguments.system_prompt}`));
    panel.append(element("pre", "args", asked), element("p", "", "Let it?"));
  } else {
    panel.append(element("p", "", `Run ${event.tool} on ${event.server} with the arguments above?`));
  }
  const remember = element("input");
  remember.type = "checkbox";
  const rememberLabel = element("label", "remember");
  rememberLabel.append(remember, " Allow this tool for the rest of this chat");
  const approve = element("button", "approve", "Approve");
  const deny = element("button", "deny", "Deny");
  for (const [button, decision] of [[approve, "approve"], [deny, "deny"]]) {
    button.type = "button";
    button.addEventListener("click", () => {
      if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return;
      const frame = { type: "approval", approval_id: event.approval_id, decision };
      if (decision === "approve" && remember.checked) frame.remember = "chat";
      state.socket.send(JSON.stringify(frame));
      approve.disabled = deny.disabled = true;
    });
  }
  const actions = element("div", "approval-actions");
  actions.append(approve, deny, rememberLabel);
  panel.append(actions);
  card.append(panel);
  setStatus("Waiting for your approval…");
  scrollDown();
}

function approvalDecided(event) {
  const panel = document.querySelector(`.approval[data-approval-id="${CSS.escape(event.approval_id)}"]`);
  if (!panel) return;
  const card = panel.closest(".tool");
  card.classList.remove("waiting");
  card.querySelector(".state").textContent = event.decision === "approved" ? "running…" : event.decision;
  const words = { approved: "Approved", denied: "Denied", expired: "Nobody approved it in time", cancelled: "Cancelled" };
  panel.replaceChildren(element("p", `decided ${event.decision}`, `${words[event.decision] || event.decision}${event.remember ? " for the rest of this chat" : ""}.`));
  if (!document.querySelector(".approval button:not(:disabled)")) setStatus(state.turn ? "Writing…" : "");
}

// --- elicitation: a tool's server asks the user something mid-call ---------------------------------

// One form field from a property of the requested schema; read() gives undefined for a field left empty
// (the platform then fills in the schema's default).
function elicitationField(name, prop, required) {
  const label = element("label", "elicitation-field");
  label.append(element("span", "", `${prop.title || name}${required ? " *" : ""}`));
  const items = prop.type === "array" ? prop.items || {} : prop;
  const options = items.enum
    ? items.enum.map((value, i) => [value, (items.enumNames || [])[i] || value])
    : (items.oneOf || items.anyOf || []).filter((o) => "const" in o).map((o) => [o.const, o.title || o.const]);
  let input;
  let read;
  if (options.length) {
    input = element("select");
    input.multiple = prop.type === "array";
    if (!input.multiple && !required) input.append(element("option", "", ""));
    const chosen = new Set([].concat(prop.default ?? []));
    for (const [value, text] of options) {
      const option = element("option", "", text);
      option.value = value;
      option.selected = chosen.has(value);
      input.append(option);
    }
    read = () => input.multiple
      ? [...input.selectedOptions].map((o) => o.value)
      : input.value === "" ? undefined : input.value;
  } else if (prop.type === "boolean") {
    input = element("input");
    input.type = "checkbox";
    input.checked = prop.default === true;
    read = () => input.checked;
  } else if (prop.type === "number" || prop.type === "integer") {
    input = element("input");
    input.type = "number";
    input.step = prop.type === "integer" ? "1" : "any";
    if (prop.minimum !== undefined) input.min = prop.minimum;
    if (prop.maximum !== undefined) input.max = prop.maximum;
    if (prop.default !== undefined) input.value = prop.default;
    read = () => input.value === "" ? undefined : Number(input.value);
  } else {
    input = element("input");
    input.type = { email: "email", uri: "url", date: "date" }[prop.format] || "text";
    if (prop.default !== undefined) input.value = prop.default;
    read = () => input.value === "" ? undefined : input.value;
  }
  input.name = name;
  label.append(input);
  if (prop.description) label.append(element("small", "", prop.description));
  return { label, read };
}

function askElicitation(event) {
  const card = cardFor(event.tool_call_id, event.server, {});
  if (document.querySelector(`.elicitation[data-elicitation-id="${CSS.escape(event.elicitation_id)}"]`)) return;
  card.open = true;
  card.classList.add("waiting");
  card.querySelector(".state").textContent = "waiting for your answer";
  const panel = element("form", "approval elicitation");
  panel.dataset.elicitationId = event.elicitation_id;
  panel.append(element("p", "", `${event.server} asks: ${event.message}`));
  const fields = {};
  if (event.mode === "url") {
    const link = element("a", "", event.url);
    link.href = event.url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    panel.append(element("p", "", "Open this page, then say whether you did:"), link);
  } else {
    const schema = event.requested_schema || {};
    const required = new Set(schema.required || []);
    for (const [name, prop] of Object.entries(schema.properties || {})) {
      fields[name] = elicitationField(name, prop, required.has(name));
      panel.append(fields[name].label);
    }
  }
  const problem = element("p", "elicitation-error");
  problem.hidden = true;
  const buttons = [["Accept", "accept"], ["Decline", "decline"], ["Cancel", "cancel"]].map(([text, action]) => {
    const button = element("button", action === "accept" ? "approve" : "deny", text);
    button.type = action === "accept" ? "submit" : "button";
    button.dataset.action = action;
    return button;
  });
  const answer = (action) => {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return;
    const frame = { type: "elicitation", elicitation_id: event.elicitation_id, action };
    if (action === "accept" && event.mode !== "url") {
      frame.content = {};
      for (const [name, field] of Object.entries(fields)) {
        const value = field.read();
        if (value !== undefined) frame.content[name] = value;
      }
    }
    state.answering = panel;
    problem.hidden = true;
    state.socket.send(JSON.stringify(frame));
  };
  panel.addEventListener("submit", (e) => { e.preventDefault(); answer("accept"); });
  for (const button of buttons.slice(1)) button.addEventListener("click", () => answer(button.dataset.action));
  const actions = element("div", "approval-actions");
  actions.append(...buttons);
  panel.append(problem, actions);
  card.append(panel);
  setStatus("Waiting for your answer…");
  scrollDown();
}

function elicitationRefused(event) {
  // The answer did not fit the form: say which fields, and let the user try again.
  const panel = state.answering;
  if (!panel || !panel.isConnected) return false;
  const problem = panel.querySelector(".elicitation-error");
  const details = Object.entries(event.details || {}).map(([name, errors]) => `${name}: ${errors.join(" ")}`);
  problem.textContent = [event.message, ...details].join(" · ");
  problem.hidden = false;
  return true;
}

function elicitationResolved(event) {
  const panel = document.querySelector(`.elicitation[data-elicitation-id="${CSS.escape(event.elicitation_id)}"]`);
  if (!panel) return;
  const card = panel.closest(".tool");
  card.classList.remove("waiting");
  card.querySelector(".state").textContent = "running…";
  const words = { accept: "Answered", decline: "Declined", cancel: event.auto ? "Nobody answered in time" : "Cancelled" };
  const done = element("div", "approval");
  const tone = { accept: "approved", decline: "denied", cancel: "expired" }[event.action] || "";
  done.append(element("p", `decided ${tone}`, `${words[event.action] || event.action}.`));
  panel.replaceWith(done);
  if (!document.querySelector(".approval button:not(:disabled)")) setStatus(state.turn ? "Writing…" : "");
}

function showSampling(event) {
  // What the model answered the server, in the tool's card.
  const card = state.turn && state.turn.cards[event.tool_call_id];
  if (!card) return;
  const label = event.error ? "Sampling refused" : `Sampled (${event.model})`;
  card.append(element("div", "label", label), element("pre", "result", event.error || event.text));
}

// --- the live turn -----------------------------------------------------------------------------

function connect() {
  if (state.socket) state.socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/chats/${state.chat.id}/`);
  state.socket = socket;
  socket.addEventListener("open", () => { setStatus(""); enableComposer(true); });
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return;
    enableComposer(false);
    setStatus(event.code === 4401 ? "Signed out." : "Disconnected; reconnecting…");
    if (event.code !== 4401 && event.code !== 4404) setTimeout(() => state.chat && connect(), 1500);
  });
  socket.addEventListener("message", (event) => handle(JSON.parse(event.data)));
}

function currentBubble(round) {
  const turn = state.turn;
  if (!turn.bubbles[round]) {
    turn.bubbles[round] = { node: element("div", "msg assistant"), text: "" };
    $("#messages").append(turn.bubbles[round].node);
  }
  return turn.bubbles[round];
}

let renderPending = null;
function renderLater(bubble) {
  // Markdown is re-rendered at most once a frame, however fast tokens arrive.
  renderPending = bubble;
  requestAnimationFrame(() => {
    if (renderPending) {
      paintBubble(renderPending);
      renderPending = null;
      scrollDown();
    }
  });
}

function paintBubble(bubble) {
  bubble.node.innerHTML = markdown(bubble.text);
  if (bubble.usage) bubble.node.append(usageLine(bubble.usage));
}

function handle(event) {
  switch (event.type) {
    case "ready":
      if (event.turn_in_progress && !state.turn) startTurnUi();
      else if (!event.turn_in_progress && (state.turn || state.pending)) turnLost();
      for (const asked of event.pending_approvals || []) askApproval(asked);
      for (const asked of event.pending_elicitations || []) askElicitation(asked);
      break;
    case "elicitation_required":
      if (!state.turn) startTurnUi();
      askElicitation(event);
      break;
    case "elicitation_resolved":
      elicitationResolved(event);
      break;
    case "sampling_result":
      showSampling(event);
      break;
    case "tool_approval_required":
      if (!state.turn) startTurnUi();
      askApproval(event);
      break;
    case "tool_approval_decided":
      approvalDecided(event);
      break;
    case "turn_started":
      if (!state.turn) startTurnUi();
      break;
    case "text_delta": {
      if (!state.turn) startTurnUi();
      const bubble = currentBubble(event.round);
      bubble.text += event.text;
      renderLater(bubble);
      break;
    }
    case "tool_call_started": {
      if (!state.turn) startTurnUi();
      const card = toolCard(event.id, event.name, event.server, event.arguments);
      state.turn.cards[event.id] = card;
      $("#messages").append(card);
      scrollDown();
      break;
    }
    case "tool_call_finished": {
      const card = state.turn && state.turn.cards[event.id];
      if (card) finishToolCard(card, event.is_error, event.content, event.duration_ms);
      break;
    }
    case "tool_progress": {
      const card = state.turn && state.turn.cards[event.tool_call_id];
      if (card && card.classList.contains("running")) showProgress(card, event);
      break;
    }
    case "usage": {
      // Each round's reply carries its own line, as its stored message does after a reload.
      const bubble = state.turn && state.turn.bubbles[event.round];
      if (bubble && hasUsage(event)) {
        bubble.usage = event;
        paintBubble(bubble);
      }
      break;
    }
    case "error":
      if (event.code === "invalid_elicitation_content" && elicitationRefused(event)) break;
      if (state.pending && !state.turn) refused(event);
      else if (state.turn && !("details" in event) && event.code !== "tool_round_limit") {
        // The turn's own error (a frame's error always has `details`): the reply failed.
        $("#messages").append(failedReply(event.message, state.turn.asked));
        scrollDown();
      } else {
        $("#messages").append(element("div", "notice", event.message));
        scrollDown();
        enableComposer(true);
      }
      break;
    case "turn_done":
      finishTurnUi(event);
      break;
  }
}

function startTurnUi() {
  const pending = state.pending;
  state.pending = null;
  if (pending) pending.bubble.classList.remove("pending");
  state.turn = { bubbles: {}, cards: {}, asked: pending ? pending.text : "" };
  $("#send").disabled = true;
  $("#stop").hidden = false;
  setStatus("Writing…");
}

// The server refused the message before any turn began (a rate limit, no model, invalid input): the message
// goes back into the box, Send works again, and the reason shows with a Retry (when waiting helps, after it).
function refused(event) {
  const pending = restorePending();
  const notice = element("div", "notice error-notice");
  notice.setAttribute("role", "alert");
  const wait = Math.ceil(Number(event.retry_after) || 0);
  notice.append(element("span", "", `Not sent: ${event.message}${wait ? ` ${whenToRetry(wait)}` : ""}`));
  // A Retry where it can help: not for input the server will refuse again, nor for a wait of hours (a budget).
  const hopeless = ["invalid", "empty_message", "frame_too_large", "invalid_json"].includes(event.code) || wait > 3600;
  if (pending && !hopeless) {
    const retry = element("button", "retry", "Retry");
    retry.type = "button";
    if (wait) {
      retry.disabled = true;
      setTimeout(() => { retry.disabled = false; }, wait * 1000);
    }
    retry.addEventListener("click", () => { notice.remove(); send(); });
    notice.append(retry);
  }
  $("#messages").append(notice);
  setStatus("");
  scrollDown();
}

function whenToRetry(seconds) {
  if (seconds < 90) return `Try again in ${seconds} s.`;
  if (seconds <= 3600) return `Try again in ${Math.ceil(seconds / 60)} min.`;
  const at = new Date(Date.now() + seconds * 1000);
  return `Try again after ${seconds < 86400 ? at.toLocaleTimeString() : at.toLocaleDateString()}.`;
}

// Takes back the message waiting for its turn: its bubble goes, its text and attachments return to the composer.
function restorePending() {
  const pending = state.pending;
  state.pending = null;
  if (pending) {
    pending.bubble.remove();
    if (!$("#input").value.trim()) $("#input").value = pending.text;
    if (pending.attached.length) {
      attachments().push(...pending.attached);
      renderAttachments();
    }
  }
  $("#stop").hidden = true;
  enableComposer(Boolean(state.socket && state.socket.readyState === WebSocket.OPEN));
  return pending;
}

// The page thought a turn was running but the server has none (it ended while the socket was away, or a Stop
// found nothing to stop): the page is reset to what is stored.
async function turnLost() {
  if (state.pending) restorePending();
  state.turn = null;
  renderPending = null;
  $("#stop").hidden = true;
  setStatus("");
  enableComposer(Boolean(state.socket && state.socket.readyState === WebSocket.OPEN));
  if (state.chat) await loadHistory();
}

async function stop() {
  if (!state.turn) {
    if (state.pending) restorePending();
    return;
  }
  try {
    await api(`/api/chats/${state.chat.id}/cancel`, { method: "POST" });
  } catch (error) {
    if (error.status === 409) await turnLost();  // no turn to stop
    else setStatus(error.message);
  }
}

function finishTurnUi(done) {
  renderPending = null; // the final render below wins over a frame still queued
  const rounds = Object.keys(state.turn ? state.turn.bubbles : {}).map(Number);
  const last = rounds.length ? state.turn.bubbles[Math.max(...rounds)] : null;
  if (last) {
    paintBubble(last);
    if (!done.success) last.node.classList.add("partial");
  }
  state.turn = null;
  $("#stop").hidden = true;
  setStatus("");
  enableComposer(true);
  scrollDown();
  refreshTitle();
}

async function refreshTitle() {
  const chat = await api(`/api/chats/${state.chat.id}`);
  Object.assign(state.chats.find((c) => c.id === chat.id) || {}, chat);
  renderChatList();
}

function send() {
  const text = $("#input").value;
  if (!text.trim() || !state.socket || state.socket.readyState !== WebSocket.OPEN || state.turn || state.pending) return;
  const frame = { type: "message", message: text, provider: $("#provider").value, model: $("#model").value };
  if ($("#prompt").value) frame.system_prompt_id = Number($("#prompt").value);
  const boxes = [...document.querySelectorAll("#servers input")];
  const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
  if (chosen.length !== boxes.length) frame.mcp_servers = chosen;
  const attached = takeAttachments();
  if (attached.length) frame.attachments = attached;
  const bubble = userBubble(text, attached.map((a) => ({ title: `Attached: ${a.uri} (${a.server})` })));
  bubble.classList.add("pending");
  $("#messages").append(bubble);
  $("#input").value = "";
  state.pending = { text, attached, bubble };
  $("#send").disabled = true;
  $("#stop").hidden = false;
  setStatus("Sending…");
  scrollDown();
  state.socket.send(JSON.stringify(frame));
}

function enableComposer(enabled) {
  $("#input").disabled = !enabled;
  $("#send").disabled = !enabled || Boolean(state.turn || state.pending);
}

// --- pickers -----------------------------------------------------------------------------------

async function loadPickers() {
  const [providers, prompts, servers] = await Promise.all([
    api("/api/providers"), api("/api/prompts?page_size=200"), api("/api/mcp/servers").catch(() => []),
  ]);
  // A provider that cannot answer now (no key, server not reachable) stays listed, disabled, with the reason.
  const enabled = providers.filter((p) => p.enabled);
  state.providers = enabled.filter((p) => p.status === "ready");
  const providerSelect = $("#provider");
  providerSelect.replaceChildren(...enabled.map((p) => {
    const ready = p.status === "ready";
    const option = new Option(ready ? p.display_name : `${p.display_name} — ${p.problem}`, p.name);
    option.disabled = !ready;
    return option;
  }));
  $("#prompt").append(...prompts.results.map((p) => new Option(p.name + (p.is_owner ? "" : " (shared)"), p.id)));
  renderServers(servers);
  loadMcpPrompts();  // the MCP prompts optgroup fills in when the servers have answered
  await loadModels();
}

async function loadModels(preferred) {
  const provider = $("#provider").value;
  if (!provider) return;
  const listing = await api(`/api/providers/${provider}/models`);
  const select = $("#model");
  const options = listing.models.map((m) => new Option(m.display_name || m.id, m.id));
  if (!listing.live) {
    // Not the provider's own list: say why, rather than show a short or empty list without a word.
    const note = new Option(`${listing.models.length ? "Saved models only" : "No models"}: ${listing.error}`, "");
    note.disabled = true;
    note.selected = !listing.models.length;  // shown in the closed picker when there is nothing to choose
    note.className = "not-live";
    options.unshift(note);
  }
  select.replaceChildren(...options);
  select.title = listing.live ? "" : listing.error || "";
  if (preferred && listing.models.some((m) => m.id === preferred)) select.value = preferred;
}

function applyChatDefaults() {
  const chat = state.chat;
  if (chat.provider && state.providers.some((p) => p.name === chat.provider)) {
    $("#provider").value = chat.provider;
    loadModels(chat.model);
  }
  $("#prompt").value = chat.system_prompt_id || "";
  $("#prompt").dataset.systemPrompt = $("#prompt").value;  // what choosing an MCP prompt leaves selected
  const selected = new Set(chat.mcp_servers);
  for (const box of document.querySelectorAll("#servers input")) box.checked = selected.size === 0 || selected.has(box.value);
}

// --- tool servers, and setting up those that need the user's own values -------------------------
// A server whose required variables (user_vars) the user has not set is "needs-setup": not offered to the
// model, and named in a strip above the messages with a form to set them. PUT .../credentials replaces all
// of the user's values for that server; values are never sent back, so no field is prefilled.

function renderServers(servers) {
  const usable = servers.filter((s) => s.enabled && s.usable);  // staff are listed servers closed to them too
  const unchecked = new Set([...document.querySelectorAll("#servers input")].filter((b) => !b.checked).map((b) => b.value));
  state.servers = usable.filter((s) => s.live.status !== "needs-setup" && s.live.status !== "needs-sign-in");
  $("#servers").replaceChildren(...state.servers.map((server) => {
    const label = element("label");
    const box = element("input");
    box.type = "checkbox";
    box.value = server.name;
    box.checked = !unchecked.has(server.name);
    label.append(box, ` ${server.display_name || server.name} (${server.live.tool_count} tools, ${server.live.status})`);
    return label;
  }));
  renderServerSetup(usable.filter((s) => s.live.status === "needs-setup" || s.live.status === "needs-sign-in"));
}

function renderServerSetup(servers) {
  const strip = $("#server-setup");
  strip.hidden = servers.length === 0;
  strip.replaceChildren(...servers.map((server) => {
    if (server.live.status === "needs-sign-in") return signInItem(server);
    const item = element("div", "setup-item");
    const open = element("button", "link", "Set up");
    open.type = "button";
    open.addEventListener("click", () => openServerSetup(server, item, open));
    item.append(element("span", "", `${server.display_name || server.name} needs your setup before its tools are offered. `), open);
    return item;
  }));
}

async function openServerSetup(server, item, opener) {
  const path = `/api/mcp/servers/${encodeURIComponent(server.name)}/credentials`;
  opener.disabled = true;
  let info;
  try {
    info = await api(path);
  } catch (error) {
    setStatus(error.message);
    opener.disabled = false;
    return;
  }
  const form = element("form", "setup-form");
  for (const variable of info.vars) {
    const label = element("label", "", variable.title + (variable.required ? "" : " (optional)"));
    const input = element("input");
    input.name = variable.name;
    input.type = variable.secret ? "password" : "text";
    input.autocomplete = variable.secret ? "new-password" : "off";  // never the page's own login
    input.required = variable.required;
    if (variable.set) input.placeholder = "set already: type it again to keep it";
    label.append(input);
    if (variable.description) label.append(element("small", "", variable.description));
    form.append(label);
  }
  const save = element("button", "", "Save");
  save.type = "submit";
  const cancel = element("button", "link", "Cancel");
  cancel.type = "button";
  cancel.addEventListener("click", () => { form.remove(); opener.disabled = false; });
  form.append(save, cancel);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = {};
    for (const input of form.querySelectorAll("input")) if (input.value) values[input.name] = input.value;
    save.disabled = true;
    try {
      const result = await api(path, { method: "PUT", body: JSON.stringify({ values }) });
      const name = server.display_name || server.name;
      setStatus(result.missing.length ? `${name}: still to set ${result.missing.join(", ")}` : `${name} is set up.`);
      renderServers(await api("/api/mcp/servers"));
    } catch (error) {
      setStatus(error.message);
      save.disabled = false;
    }
  });
  item.append(form);
  form.querySelector("input")?.focus();
}

// --- start -------------------------------------------------------------------------------------

$("#new-chat").addEventListener("click", newChat);
$("#provider").addEventListener("change", () => loadModels());
$("#prompt").addEventListener("change", promptPicked);
$("#attach").addEventListener("click", openAttachPanel);
$("#stop").addEventListener("click", stop);
$("#composer").addEventListener("submit", (event) => { event.preventDefault(); send(); });
$("#input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); send(); }
});

await loadPickers();
await loadChats();
const fromHash = Number((location.hash.match(/chat-(\d+)/) || [])[1]);
if (fromHash) await openChat(fromHash);
else if (state.chats.length) await openChat(state.chats[0].id);

// --- OAuth sign-in for remote servers -----------------------------------------------------------------
// An OAuth server the user has not connected their account to is "needs-sign-in": not offered to the model,
// and named in the setup strip with a Connect button. The platform starts the sign-in and answers with the
// authorization server's URL; the browser goes there and comes back to /?mcp_oauth=<server> (or
// ?mcp_oauth_error=...), which is announced here once and taken off the address.

function signInItem(server) {
  const item = element("div", "setup-item sign-in");
  const connect = element("button", "link", "Connect");
  connect.type = "button";
  connect.dataset.server = server.name;
  connect.addEventListener("click", async () => {
    connect.disabled = true;
    try {
      const started = await api(`/api/mcp/servers/${encodeURIComponent(server.name)}/oauth/connect`, { method: "POST" });
      location.assign(started.authorization_url);
    } catch (error) {
      setStatus(error.message);
      connect.disabled = false;
    }
  });
  item.append(element("span", "", `${server.display_name || server.name} needs you to sign in before its tools are offered. `), connect);
  return item;
}

{
  const params = new URLSearchParams(location.search);
  if (params.has("mcp_oauth") || params.has("mcp_oauth_error")) {
    setStatus(params.has("mcp_oauth") ? `Connected to ${params.get("mcp_oauth")}.` : `Sign-in failed: ${params.get("mcp_oauth_error")}`);
    history.replaceState(null, "", location.pathname);
  }
}

// --- MCP resources attached to a message, and MCP prompts rendered into it ----------------------------
// Attached resources go with the message frame (`attachments`): the platform reads them as the user and
// stores each as a text block after the message's own text, its header naming it. MCP prompts sit in the
// prompt picker under "MCP prompts": choosing one asks for its arguments, renders it on its server and puts
// its user-role text into the message box; the system prompt choice stays as it was.
// (Function declarations only: the page's start above runs before this part of the module.)

function attachments() {
  state.attachments ??= [];
  return state.attachments;
}

function renderAttachments() {
  $("#attachments").replaceChildren(...attachments().map((item, index) => {
    const chip = element("span", "chip");
    chip.dataset.server = item.server;
    chip.dataset.uri = item.uri;
    const remove = element("button", "link", "Remove");
    remove.type = "button";
    remove.setAttribute("aria-label", `Remove ${item.uri}`);
    remove.addEventListener("click", () => { attachments().splice(index, 1); renderAttachments(); });
    chip.append(element("span", "", `${item.server}: ${item.uri}`), remove);
    return chip;
  }));
}

function addAttachment(server, uri) {
  const wanted = uri.trim();
  if (!server || !wanted || attachments().some((a) => a.server === server && a.uri === wanted)) return;
  if (attachments().length >= 10) {
    setStatus("At most 10 resources can be attached to a message.");
    return;
  }
  attachments().push({ server, uri: wanted });
  renderAttachments();
}

function takeAttachments() {
  const taken = attachments().splice(0);
  renderAttachments();
  return taken;
}

function openAttachPanel() {
  const panel = $("#composer-panel");
  if (panel.querySelector(".attach-form")) {
    panel.replaceChildren();
    return;
  }
  const form = element("form", "composer-form attach-form");
  const serverLabel = element("label", "", "Server");
  const server = element("select");
  server.name = "server";
  server.append(...state.servers.map((s) => new Option(s.display_name || s.name, s.name)));
  serverLabel.append(server);
  const uriLabel = element("label", "", "Resource URI");
  const uri = element("input");
  uri.name = "uri";
  uri.autocomplete = "off";
  uri.placeholder = "pick one below, or type it";
  uriLabel.append(uri);
  const add = element("button", "", "Attach");
  add.type = "submit";
  const close = element("button", "link", "Close");
  close.type = "button";
  close.addEventListener("click", () => panel.replaceChildren());
  const found = element("div", "resource-list");
  server.addEventListener("change", () => listResources(server.value, found, uri));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    addAttachment(server.value, uri.value);
    uri.value = "";
  });
  form.append(serverLabel, uriLabel, add, close, found);
  panel.replaceChildren(form);
  if (state.servers.length) listResources(server.value, found, uri);
  else found.append(element("small", "", "No MCP server to attach from."));
}

async function listResources(server, box, uriInput) {
  box.replaceChildren(element("small", "", "Listing resources…"));
  let listing;
  try {
    listing = await api(`/api/mcp/servers/${encodeURIComponent(server)}/resources`);
  } catch (error) {
    box.replaceChildren(element("small", "", error.message));
    return;
  }
  const resources = listing.resources.map((resource) => {
    const pick = element("button", "link", `${resource.name || resource.uri} (${resource.uri})`);
    pick.type = "button";
    pick.dataset.uri = resource.uri;
    if (resource.description) pick.title = resource.description;
    pick.addEventListener("click", () => addAttachment(server, resource.uri));
    return pick;
  });
  // A template needs its parts filled in: it goes to the URI field, not straight to the message.
  const templates = listing.resource_templates.map((template) => {
    const fill = element("button", "link", `${template.name || template.uriTemplate}: ${template.uriTemplate} (fill in)`);
    fill.type = "button";
    if (template.description) fill.title = template.description;
    fill.addEventListener("click", () => { uriInput.value = template.uriTemplate; uriInput.focus(); });
    return fill;
  });
  box.replaceChildren(...resources, ...templates);
  if (!resources.length && !templates.length) box.append(element("small", "", "This server lists no resources: type a URI."));
}

// A user message as stored: the text typed, then one block per attached resource (see chats/services/turns/attachments.py).
function storedUserBubble(content) {
  const header = /^\n\nAttached resource (.*) \(([^()]*)\):\n/;
  const own = [];
  const attached = [];
  for (const block of content.filter((b) => b.type === "text")) {
    const match = block.text.match(header);
    if (match) attached.push({ title: `Attached: ${match[1]} (${match[2]})`, body: block.text.slice(match[0].length) });
    else if (block.text.startsWith("\n\n[binary resource ")) attached.push({ title: block.text.trim().slice(1, -1) });
    else own.push(block.text);
  }
  return userBubble(own.join(""), attached);
}

function userBubble(text, attached) {
  const bubble = element("div", "msg user", text);
  for (const item of attached) {
    const details = element("details", "attachment");
    details.append(element("summary", "", item.title));
    if (item.body !== undefined) details.append(element("pre", "", item.body));
    bubble.append(details);
  }
  return bubble;
}

async function loadMcpPrompts() {
  const select = $("#prompt");
  const lists = await Promise.all(state.servers.map((server) =>
    api(`/api/mcp/servers/${encodeURIComponent(server.name)}/prompts`)
      .then((body) => [server, body.prompts])
      .catch(() => [server, []])));  // a server that is down offers none for now
  state.mcpPrompts = new Map();
  const group = element("optgroup", "mcp-prompts");
  group.label = "MCP prompts";
  for (const [server, prompts] of lists) {
    for (const prompt of prompts) {
      const key = `mcp:${server.name}:${prompt.name}`;
      state.mcpPrompts.set(key, { server: server.name, prompt });
      const option = new Option(`${prompt.title || prompt.name} (${server.display_name || server.name})`, key);
      if (prompt.description) option.title = prompt.description;
      group.append(option);
    }
  }
  select.querySelector("optgroup.mcp-prompts")?.remove();
  if (group.children.length) select.append(group);
}

function promptPicked() {
  const select = $("#prompt");
  const chosen = state.mcpPrompts && state.mcpPrompts.get(select.value);
  if (!chosen) {
    select.dataset.systemPrompt = select.value;
    return;
  }
  select.value = select.dataset.systemPrompt || "";  // an MCP prompt is not a system prompt
  openPromptForm(chosen.server, chosen.prompt);
}

function openPromptForm(server, prompt) {
  const panel = $("#composer-panel");
  const form = element("form", "composer-form prompt-form");
  form.dataset.prompt = prompt.name;
  form.append(element("strong", "", `${prompt.title || prompt.name} (${server})`));
  if (prompt.description) form.append(element("small", "", prompt.description));
  const inputs = {};
  for (const argument of prompt.arguments || []) {
    const label = element("label", "", `${argument.title || argument.name}${argument.required ? " *" : ""}`);
    const input = element("input");
    input.name = argument.name;
    input.required = Boolean(argument.required);
    input.autocomplete = "off";
    label.append(input);
    if (argument.description) label.append(element("small", "", argument.description));
    inputs[argument.name] = input;
    form.append(label);
  }
  const insert = element("button", "", "Insert");
  insert.type = "submit";
  const cancel = element("button", "link", "Cancel");
  cancel.type = "button";
  cancel.addEventListener("click", () => panel.replaceChildren());
  form.append(insert, cancel);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const args = {};
    for (const [name, input] of Object.entries(inputs)) if (input.value !== "") args[name] = input.value;
    insert.disabled = true;
    try {
      const path = `/api/mcp/servers/${encodeURIComponent(server)}/prompts/${encodeURIComponent(prompt.name)}/get`;
      insertRenderedPrompt(await api(path, { method: "POST", body: JSON.stringify({ arguments: args }) }));
      panel.replaceChildren();
    } catch (error) {
      setStatus(error.message);
      insert.disabled = false;
    }
  });
  panel.replaceChildren(form);
  (form.querySelector("input") || insert).focus();
}

// The user-role text of a rendered prompt goes into the message box (after what is there). A message carries
// only the user's words, so the prompt's assistant-role messages and non-text parts are left out, and said so.
function insertRenderedPrompt(rendered) {
  const texts = [];
  let left = 0;
  for (const message of rendered.messages || []) {
    const content = message.content || {};
    const text = content.type === "text" ? content.text : content.type === "resource" ? (content.resource || {}).text : undefined;
    if (message.role === "user" && typeof text === "string") texts.push(text);
    else left += 1;
  }
  const box = $("#input");
  box.value = [box.value.trim(), ...texts].filter(Boolean).join("\n\n");
  box.focus();
  setStatus(left ? `${left} part(s) of the prompt left out (assistant messages, images): only your own text goes into a message.` : "");
}
