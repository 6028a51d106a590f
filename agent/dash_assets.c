/*
 * dash_assets.c — the dashboard's style sheet and script, compiled into
 * rekeyd.  They are small and change with the pages that use them, so
 * keeping them in the binary means there is no assets folder to install,
 * find or keep in step with the daemon (docs/operations.md, "Dashboard").
 * The Content-Security-Policy allows only these two files: no inline
 * script or style anywhere.
 */
#include "dash.h"

const char rk_dash_css[] =
    "*{box-sizing:border-box}\n"
    "html{font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;font-size:100%;"
    "color:#1a1a1a;background:#fff;line-height:1.5}\n"
    "body{margin:0}\n"
    ".skip{position:absolute;left:-10000px;top:0;background:#fff;padding:.5rem}\n"
    ".skip:focus{left:.5rem;z-index:10}\n"
    "header{background:#00365c;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;"
    "gap:1rem;align-items:center;justify-content:space-between}\n"
    "header .brand{font-weight:bold;margin:0}\n"
    "header a{color:#fff}\n"
    "nav ul{list-style:none;margin:0;padding:0;display:flex;gap:1rem;flex-wrap:wrap}\n"
    "nav a[aria-current=page]{font-weight:bold;text-decoration-thickness:3px}\n"
    "header form{margin:0;display:flex;gap:.5rem;align-items:center}\n"
    "main{padding:1rem;max-width:80rem}\n"
    "h1{font-size:1.6rem;margin:.5rem 0 1rem}\n"
    "h2{font-size:1.25rem;margin:1.5rem 0 .5rem}\n"
    "a{color:#004f8a}\n"
    "table{border-collapse:collapse;margin:.5rem 0 1rem;min-width:20rem}\n"
    "caption{text-align:left;font-weight:bold;padding:.25rem 0}\n"
    "th,td{border:1px solid #767676;padding:.3rem .5rem;text-align:left;vertical-align:top}\n"
    "th{background:#e8eef4}\n"
    "td.num,th.num{text-align:right}\n"
    "dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}\n"
    "dl.facts dt{font-weight:600}\n"
    "dl.facts dd{margin:0}\n"
    "tr.marked td{background:#fff4d6}\n"
    "tr.open td{background:#fde8e8}\n"
    ".sev-block{color:#a00000;font-weight:bold}\n"
    ".sev-warn{color:#6b4e00;font-weight:bold}\n"
    ".overdue{color:#a00000;font-weight:bold}\n"
    ".msg{border:2px solid #00365c;background:#eef4fa;padding:.5rem 1rem;margin:.5rem 0 1rem}\n"
    ".msg.error{border-color:#a00000;background:#fde8e8}\n"
    "pre.doc{background:#f6f6f6;border:1px solid #767676;padding:.5rem;overflow:auto;"
    "max-height:40rem;white-space:pre-wrap;word-break:break-word}\n"
    "code{font-family:ui-monospace,\"DejaVu Sans Mono\",monospace;font-size:.95em}\n"
    "form.inline{display:inline}\n"
    "fieldset{border:1px solid #767676;margin:0 0 1rem;padding:.5rem 1rem 1rem}\n"
    "legend{font-weight:bold;padding:0 .25rem}\n"
    "label{display:block;margin:.5rem 0 .2rem;font-weight:600}\n"
    "label.inline{display:inline;font-weight:normal}\n"
    "input[type=text],input[type=password],select,textarea{font:inherit;padding:.3rem;"
    "border:1px solid #555;border-radius:2px;min-width:16rem;max-width:100%;background:#fff;"
    "color:#1a1a1a}\n"
    "textarea{width:32rem;min-height:4rem}\n"
    "button{font:inherit;padding:.35rem .9rem;border:2px solid #00365c;border-radius:3px;"
    "background:#00365c;color:#fff;cursor:pointer;margin-top:.5rem}\n"
    "button.secondary{background:#fff;color:#00365c}\n"
    "button.danger{background:#a00000;border-color:#a00000}\n"
    "header button{background:#fff;color:#00365c;margin:0}\n"
    ".filters{display:flex;flex-wrap:wrap;gap:0 1.5rem;align-items:flex-end}\n"
    ".filters div{margin-bottom:.5rem}\n"
    ".actions{display:flex;flex-wrap:wrap;gap:1rem}\n"
    ".actions fieldset{flex:1 1 20rem}\n"
    "a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,"
    "textarea:focus-visible,summary:focus-visible{outline:3px solid #d35400;"
    "outline-offset:2px;box-shadow:0 0 0 5px #fff}\n"
    ".visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;"
    "clip:rect(0 0 0 0);white-space:nowrap}\n";

/* Progressive help only: every page works without it.  On the
 * correction form, choosing a field puts its current value into the new
 * value box; the first message of a page gets the focus so a screen
 * reader hears the outcome of a decision. */
const char rk_dash_js[] =
    "'use strict';\n"
    "document.addEventListener('DOMContentLoaded', function () {\n"
    "  var sel = document.getElementById('korr-feld');\n"
    "  var val = document.getElementById('korr-wert');\n"
    "  if (sel && val) {\n"
    "    sel.addEventListener('change', function () {\n"
    "      var opt = sel.options[sel.selectedIndex];\n"
    "      if (opt && opt.hasAttribute('data-wert')) val.value = opt.getAttribute('data-wert');\n"
    "    });\n"
    "  }\n"
    "  var msg = document.querySelector('.msg[tabindex]');\n"
    "  if (msg) msg.focus();\n"
    "});\n";
