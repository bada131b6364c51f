// Every sentence the page itself shows, in English and Simplified Chinese.
// Sentences about the job's progress come from the server in the chosen language; these are the page's own.

export const LANGUAGES = ["en", "zh-CN"];
const STORAGE_KEY = "oldphoto.lang";

const STRINGS = {
  en: {
    "app.title": "Old Photo Restoration",
    "app.tagline": "Bring colour and clarity back to family photographs. You can watch every step as it happens.",
    "lang.label": "Language",
    "upload.heading": "Your photo",
    "upload.drop": "Drop a photo here, paste one (Ctrl+V), or",
    "upload.browse": "choose a file",
    "upload.hint": "JPEG, PNG, WebP or TIFF, up to 25 MB",
    "steps.legend": "What should we do?",
    "steps.colorize": "Colorize",
    "steps.colorize.hint": "Add natural colour to black-and-white",
    "steps.denoise": "Denoise",
    "steps.denoise.hint": "Smooth grain and speckles",
    "steps.upscale": "Upscale",
    "steps.upscale.hint": "Enlarge with more detail",
    "steps.sharpen": "Sharpen",
    "steps.sharpen.hint": "Crisper edges",
    "steps.none": "Choose at least one step.",
    "start": "Restore photo",
    "job.heading": "Restoration",
    "job.uploading": "Uploading your photo... {percent}%",
    "job.connecting": "Connecting to the server...",
    "job.position": "Position {position} in the queue",
    "job.eta": "About {seconds} s left",
    "metrics.chart": "Memory and speed of this restoration",
    "metrics.memory": "Memory {mb} MB (peak {peak} MB)",
    "metrics.gpu": "GPU {mb} MB",
    "metrics.speed": "{rate} {unit}/s",
    "metrics.done": "{done} of {total}",
    "metrics.peak": "Peak memory {mb} MB",
    "metrics.gpuPeak": "GPU peak {mb} MB",
    "metrics.took": "{seconds} s in all",
    "metrics.unit.block": "blocks",
    "metrics.unit.tile": "tiles",
    "metrics.unit.band": "bands",
    "metrics.unit.step": "steps",
    "job.cancel": "Cancel",
    "job.cancelling": "Cancelling...",
    "job.cancelled": "Cancelled",
    "job.failed": "Restoration failed",
    "job.progressLabel": "Restoration progress",
    "job.reconnecting": "Connection lost. Reconnecting...",
    "job.transport.sse": "Live updates come over an event stream: this network does not let WebSockets through.",
    "job.transport.poll": "Updates come about once a second: this network does not let live connections through.",
    "compare.label": "Compare before and after",
    "compare.before": "Before",
    "compare.after": "After",
    "compare.original": "Your original photo",
    "compare.result": "The restored photo",
    "compare.preview": "A preview of the restored photo so far",
    "download": "Download restored photo",
    "lens.toggle": "Colour queries",
    "lens.overlay": "Which of the model's colour queries decided the colour of each part of the photo",
    "lens.explain": "The colorizer proposes colours through 100 learned queries. Over the photo, each area shows the colour of the query that dominates it; below, the queries that count most, with where they act (white: strongest).",
    "lens.query": "Query {index}: {share}% of the colour, dominant on {dominates}% of the photo",
    "lens.map": "Where colour query {index} acts",
    "error.retry": "Try again",
    "error.retryIn": "You can try again in {seconds} s.",
    "error.network": "The server could not be reached. Check your connection and try again.",
    "error.too_large": "This file is too large.",
    "error.unsupported_format": "This file is not a supported image format.",
    "error.invalid_image": "This file could not be read as an image.",
    "error.user_limit": "You have several photos in progress already.",
    "error.queue_full": "The queue is full right now.",
    "error.model_missing": "The restoration model is not available on the server.",
    "error.not_found": "This job could not be found.",
    "error.unknown": "Something went wrong.",
    "recent.heading": "Recent restorations",
    "recent.empty": "Photos you restore will appear here.",
    "recent.open": "Show this restoration",
    "status.queued": "Queued",
    "status.running": "In progress",
    "status.succeeded": "Done",
    "status.failed": "Failed",
    "status.cancelled": "Cancelled",
    "stage.upload": "Upload",
    "stage.queued": "Queued",
    "stage.preprocess": "Preprocess",
    "stage.load_model": "Load model",
    "stage.inference": "Inference",
    "stage.postprocess": "Postprocess",
    "stage.complete": "Complete",
    "source.colorize": "Colorize",
    "source.denoise": "Denoise",
    "source.upscale": "Upscale",
    "source.sharpen": "Sharpen",
    "source.comfyui": "ComfyUI",
    "source.system": "",
  },
  "zh-CN": {
    "app.title": "老照片修复",
    "app.tagline": "为家庭老照片找回色彩与清晰。每一步进展都看得见。",
    "lang.label": "语言",
    "upload.heading": "您的照片",
    "upload.drop": "将照片拖到这里、粘贴（Ctrl+V），或",
    "upload.browse": "选择文件",
    "upload.hint": "JPEG、PNG、WebP 或 TIFF，不超过 25 MB",
    "steps.legend": "需要做哪些处理？",
    "steps.colorize": "上色",
    "steps.colorize.hint": "为黑白照片添加自然色彩",
    "steps.denoise": "去噪",
    "steps.denoise.hint": "减少颗粒和斑点",
    "steps.upscale": "放大",
    "steps.upscale.hint": "放大并补充细节",
    "steps.sharpen": "锐化",
    "steps.sharpen.hint": "让边缘更清晰",
    "steps.none": "请至少选择一项处理。",
    "start": "开始修复",
    "job.heading": "修复进度",
    "job.uploading": "正在上传照片... {percent}%",
    "job.connecting": "正在连接服务器...",
    "job.position": "排队中：第 {position} 位",
    "job.eta": "预计还需约 {seconds} 秒",
    "metrics.chart": "本次修复的内存与速度",
    "metrics.memory": "内存 {mb} MB（峰值 {peak} MB）",
    "metrics.gpu": "显存 {mb} MB",
    "metrics.speed": "每秒 {rate} {unit}",
    "metrics.done": "{done}/{total}",
    "metrics.peak": "内存峰值 {mb} MB",
    "metrics.gpuPeak": "显存峰值 {mb} MB",
    "metrics.took": "共用时 {seconds} 秒",
    "metrics.unit.block": "个模块",
    "metrics.unit.tile": "个图块",
    "metrics.unit.band": "个条带",
    "metrics.unit.step": "步",
    "job.cancel": "取消",
    "job.cancelling": "正在取消...",
    "job.cancelled": "已取消",
    "job.failed": "修复失败",
    "job.progressLabel": "修复进度",
    "job.reconnecting": "连接已断开，正在重新连接...",
    "job.transport.sse": "正在通过事件流接收实时进度：此网络不允许 WebSocket 连接。",
    "job.transport.poll": "进度约每秒更新一次：此网络不允许实时连接。",
    "compare.label": "对比修复前后",
    "compare.before": "修复前",
    "compare.after": "修复后",
    "compare.original": "您的原始照片",
    "compare.result": "修复后的照片",
    "compare.preview": "目前的修复预览",
    "download": "下载修复后的照片",
    "lens.toggle": "色彩查询",
    "lens.overlay": "模型的哪个色彩查询决定了照片各部分的颜色",
    "lens.explain": "上色模型通过 100 个学习得到的查询来提出颜色。照片上每个区域显示主导它的查询的颜色；下方列出作用最大的查询及其作用位置（白色：最强）。",
    "lens.query": "查询 {index}：占颜色的 {share}%，在照片的 {dominates}% 处起主导作用",
    "lens.map": "色彩查询 {index} 的作用位置",
    "error.retry": "重试",
    "error.retryIn": "请在 {seconds} 秒后重试。",
    "error.network": "无法连接服务器。请检查网络后重试。",
    "error.too_large": "文件太大。",
    "error.unsupported_format": "不支持此文件格式。",
    "error.invalid_image": "无法将此文件读取为图像。",
    "error.user_limit": "您已有多张照片正在处理中。",
    "error.queue_full": "当前队列已满。",
    "error.model_missing": "服务器上没有可用的修复模型。",
    "error.not_found": "找不到此任务。",
    "error.unknown": "出现了问题。",
    "recent.heading": "最近的修复",
    "recent.empty": "修复过的照片会显示在这里。",
    "recent.open": "查看此次修复",
    "status.queued": "排队中",
    "status.running": "处理中",
    "status.succeeded": "已完成",
    "status.failed": "失败",
    "status.cancelled": "已取消",
    "stage.upload": "上传",
    "stage.queued": "排队",
    "stage.preprocess": "预处理",
    "stage.load_model": "加载模型",
    "stage.inference": "推理",
    "stage.postprocess": "后处理",
    "stage.complete": "完成",
    "source.colorize": "上色",
    "source.denoise": "去噪",
    "source.upscale": "放大",
    "source.sharpen": "锐化",
    "source.comfyui": "ComfyUI",
    "source.system": "",
  },
};

let current = "en";

export function currentLanguage() {
  return current;
}

/** The remembered choice, else the browser's preference. */
export function initialLanguage() {
  const saved = safeStorageGet(STORAGE_KEY);
  if (LANGUAGES.includes(saved)) return saved;
  return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

export function setLanguage(lang) {
  current = LANGUAGES.includes(lang) ? lang : "en";
  safeStorageSet(STORAGE_KEY, current);
  document.documentElement.lang = current;
  translatePage(document);
}

export function t(key, params = {}) {
  const template = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/** Whether a key exists, so callers can fall back when a server code has no sentence of ours. */
export function has(key) {
  return key in STRINGS.en;
}

// Static markup names its strings: data-i18n="key" for text, data-i18n-attr="attr:key;attr:key" for attributes.
function translatePage(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":");
      el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
  document.title = t("app.title");
}

// Storage can be disabled (private modes, strict settings); the page must still work without it.
function safeStorageGet(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function safeStorageSet(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* the choice just is not remembered */
  }
}
