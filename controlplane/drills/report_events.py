"""The sentences of a drill's timeline and findings, and the names of its checks, in the report's language.

The engine writes each timeline event as one English sentence (controlplane/drills/engine.py, recovery.py,
inject.py's actions, state.py's abort): the record keeps it as written, and a report in another language
translates it here, sentence by sentence. What is a name, not words (a command, a runbook, a scenario, an
`erpctl status` item, a runbook's step title quoted as written, a path), is kept as it is and marked as
code. A sentence no pattern knows is shown as written (tests/controlplane/drills/test_report_events.py
runs every sentence the shipped scenarios produce through the Chinese report).
"""

from __future__ import annotations

import re
from typing import Callable

from controlplane import layout

# (English sentence, Chinese template, groups kept as written and shown as code). Most specific first.
_S = r"(?P<s>[\d.]+|None)"
EVENTS: list[tuple[str, str, tuple[str, ...]]] = [
    (r"drill started", "演练开始", ()),
    (r"sandbox serves release (?P<a>\S+); the upgrade to (?P<b>\S+) is rehearsed",
     "沙箱运行版本 {a}，演练升级到版本 {b}", ()),
    (r"sandbox seeded from scratch \(--fresh, scale (?P<n>\d+)\)", "沙箱从零初始化并填充数据（{flag}，规模 {n}）", ()),
    (r"sandbox restored from backup (?P<id>\S+) \(verified first\)", "沙箱已从备份 {id} 恢复（恢复前先经校验）", ("id",)),
    (r"sandbox serving", "沙箱已开始提供服务", ()),
    (r"field key escrowed \(passphrase copy beside the sandbox's data directory\)",
     "字段加密密钥已托管（口令加密的副本，位于沙箱数据目录旁）", ()),
    (r"backup taken in the sandbox \(the scheduled backup\)", "已在沙箱中完成备份（即计划备份）", ()),
    (r"steady state holds", "稳态检查通过", ()),
    (r"steady state does NOT hold", "稳态检查未通过", ()),
    (r"fault injected: (?P<kind>\S+)", "已注入故障：{kind_zh}（{kind}）", ("kind",)),
    (rf"detected after {_S} s: (?P<cmd>erpctl .+) exited (?P<code>\d+)",
     "故障注入后 {s} 秒检测到：{cmd} 退出码 {code}", ("cmd",)),
    (rf"detected after {_S} s: (?P<item>.+)", "故障注入后 {s} 秒检测到：{item}（{status} 的告警项）", ("item",)),
    (r"not detected in time", "未在时限内检测到故障", ()),
    (rf"alert (?P<alert>\S+) pending {_S} s after the fault", "故障注入后 {s} 秒告警 {alert} 进入 pending", ("alert",)),
    (rf"alert (?P<alert>\S+) firing {_S} s after the fault \(`for` (?P<f>[\d.]+) s, shortened\)",
     "故障注入后 {s} 秒告警 {alert} 进入 firing（for 为 {f} 秒，本次演练已缩短）", ("alert",)),
    (rf"alert (?P<alert>\S+) firing {_S} s after the fault \(`for` (?P<f>[\d.]+) s, as shipped\)",
     "故障注入后 {s} 秒告警 {alert} 进入 firing（for 为 {f} 秒，与发布配置一致）", ("alert",)),
    (rf"detection judged by probe: {_S} s", "检测时间以探针为准：{s} 秒", ()),
    (rf"detection judged by alert-pending: {_S} s", "检测时间以告警进入 pending 为准：{s} 秒", ()),
    (rf"detection judged by alert-firing: {_S} s", "检测时间以告警进入 firing 为准：{s} 秒", ()),
    (r"Prometheus serving with the shipped rules, scraping the sandbox; the alert (?P<alert>\S+) detects, its `for` "
     r"shortened to (?P<f>[\d.]+) s \(shipped: (?P<g>[\d.]+) s\)",
     "Prometheus 已启动，使用发布的告警规则采集沙箱指标；由告警 {alert} 检测，其 for 缩短为 {f} 秒（发布配置：{g} 秒）",
     ("alert",)),
    (r"Prometheus serving with the shipped rules, scraping the sandbox; the alert (?P<alert>\S+) detects, its `for` "
     r"as shipped \((?P<g>[\d.]+) s\)",
     "Prometheus 已启动，使用发布的告警规则采集沙箱指标；由告警 {alert} 检测，其 for 与发布配置一致（{g} 秒）",
     ("alert",)),
    (r"Prometheus is not installed \(no prometheus on PATH\): detection by the probes only \(the alert (?P<alert>\S+) "
     r"is not evaluated\)", "未安装 Prometheus（PATH 中没有 prometheus）：仅由探针检测（未评估告警 {alert}）", ("alert",)),
    (r"--detect probes was given: detection by the probes only \(the alert (?P<alert>\S+) is not evaluated\)",
     "指定了 {detectp}：仅由探针检测（未评估告警 {alert}）", ("alert",)),
    (r"the restore discards (?P<n>\d+|None) write\(s\) made since the backup \(erpctl backup restore --dry-run\)",
     "恢复将丢弃备份之后的 {n} 条写入（{dry}）", ()),
    (r"runbook (?P<rb>\S+) started \(--yes\)", "运行手册 {rb} 开始执行（{yes}）", ("rb",)),
    (r"runbook (?P<rb>\S+) ended (?P<st>\S+) \(exit (?P<code>\S+)\)", "运行手册 {rb} 执行结束：{st_zh}（退出码 {code}）",
     ("rb",)),
    (r"manual step (?P<n>\S+) \((?P<title>.*)\): (?P<act>.+)", "人工步骤 {n}（{title}）：{act_zh}", ("title",)),
    (rf"RTO {_S} s, (?P<lost>\d+) acknowledged write\(s\) lost of (?P<all>\d+)",
     "RTO {s} 秒；已确认的写入共 {all} 条，丢失 {lost} 条", ()),
    (r"sandbox removed", "沙箱已删除", ()),
    (r"the live drill's scratch directory removed \(nothing of the live installation is removed\)",
     "在线演练的临时目录已删除（在线系统的任何内容均未删除）", ()),
    (r"live drill approved by (?P<a>.+) and (?P<b>.+) in a window containing now",
     "在线演练已获批准（批准人：{a}、{b}），当前时间在维护窗口内", ("a", "b")),
    (r"live installation serving; drill user (?P<user>\S+) created \(its writes stay, marked as drill data\)",
     "在线系统正在提供服务；已创建演练专用用户 {user}（其写入的数据保留，并标记为演练数据）", ("user",)),
    (r"drill user (?P<user>\S+) deactivated; the live installation serves",
     "演练专用用户 {user} 已停用；在线系统正常提供服务", ("user",)),
    (r"drill user (?P<user>\S+) NOT deactivated; the live installation (?P<how>serves|does NOT serve)",
     "演练专用用户 {user} 未能停用；在线系统状态：{how}", ("user", "how")),
    (r"drill user (?P<user>\S+) deactivated; the live installation does NOT serve",
     "演练专用用户 {user} 已停用；在线系统未能提供服务", ("user",)),
    (r"sandbox kept at (?P<path>.+)", "沙箱保留于 {path}", ("path",)),
    (r"drill aborted: its process was gone \(killed\); cleaned up by the next drill command",
     "演练已中止：其进程已不存在（被杀死），由下一条演练命令完成清理", ()),
    (r"drill aborted: (?P<why>.+)", "演练已中止：{why}", ("why",)),
]

# The findings the engine records (engine.py, detection.py, state.py), in the same form as the events.
FINDINGS: list[tuple[str, str, tuple[str, ...]]] = [
    (rf"The alert (?P<alert>\S+) went pending {_S} s after the fault and cleared before its `for` \((?P<f>[\d.]+) s\) "
     r"ran out: the service came back before anyone was paged\.",
     "告警 {alert} 在故障注入后 {s} 秒进入 pending，并在其 for（{f} 秒）届满前解除：服务在有人被呼叫之前已恢复。", ("alert",)),
    (r"The alert (?P<alert>\S+) never went pending and the sandbox served again before its `for` \((?P<f>[\d.]+) s\) "
     r"ran out: the service came back before anyone was paged\.",
     "告警 {alert} 未进入 pending，沙箱在其 for（{f} 秒）届满前已恢复服务：服务在有人被呼叫之前已恢复。", ("alert",)),
    (r"The alert (?P<alert>\S+) did not fire within (?P<t>\d+) s of the fault \(`for` (?P<f>[\d.]+) s\); it went "
     r"pending\.", "告警 {alert} 在故障注入后 {t} 秒内未进入 firing（for 为 {f} 秒）；曾进入 pending。", ("alert",)),
    (r"The alert (?P<alert>\S+) did not fire within (?P<t>\d+) s of the fault \(`for` (?P<f>[\d.]+) s\); it never "
     r"went pending\.", "告警 {alert} 在故障注入后 {t} 秒内未进入 firing（for 为 {f} 秒）；从未进入 pending。", ("alert",)),
    (r"The probes did not detect the fault within (?P<t>\d+) s \(expected: (?P<what>.+)\)\.",
     "探针未在故障注入后 {t} 秒内检测到故障（预期：{what}）。", ("what",)),
    (r"The runbook (?P<rb>\S+) did not recover the sandbox: it ended (?P<st>\S+) \(exit (?P<code>\S+)\); see "
     r"(?P<log>\S+)\.", "运行手册 {rb} 未能恢复沙箱：结束状态为{st_zh}（退出码 {code}）；详见 {log}。", ("rb", "log")),
    (r"No business write was acknowledged within (?P<t>\d+) s after the recovery ended\.",
     "恢复结束后 {t} 秒内没有任何业务写入得到确认。", ()),
    (r"(?P<n>\d+) acknowledged write\(s\) lost \((?P<kinds>.+)\), acknowledged between (?P<a>\S+) and (?P<b>\S+); "
     r"workload\.jsonl lists every acknowledged write\.",
     "丢失 {n} 条已确认的写入（{kinds}），确认时间在 {a} 至 {b} 之间；{jsonl} 列出了每一条已确认的写入。", ("kinds",)),
    (r"Objective (?P<obj>\S+) missed: measured (?P<m>\S+), target (?P<tg>\S+)\.",
     "目标 {obj} 未达成：实测 {m}，目标 {tg}。", ("obj",)),
    (r"Checks failed: (?P<bad>.+)\.", "检查未通过：{bad}。", ("bad",)),
    (r"The clean-up left (?P<left>.+)\.", "清理后仍有残留：{left}。", ("left",)),
    (r"The drill was aborted \((?P<why>.+)\) before it ended\.", "演练在结束前被中止（{why}）。", ("why",)),
    (r"The drill could not go on: (?P<why>.+)", "演练无法继续：{why}", ("why",)),
    (r"The drill user (?P<user>\S+) is not shown deactivated \(active: (?P<a>\S+)\)\.",
     "演练专用用户 {user} 未显示为已停用（active：{a}）。", ("user",)),
    (r"The live installation does not answer /readyz after the drill\.", "演练结束后在线系统未响应 {readyz}。", ()),
    (r"The drill did not finish: its process was gone \(killed\); cleaned up by the next drill command\.",
     "演练未完成：其进程已不存在（被杀死），由下一条演练命令完成清理。", ()),
    (r"The drill did not finish: (?P<why>.+)\.", "演练未完成：{why}。", ("why",)),
]

# What the drill does for people (inject.py's actions), inside "manual step ...: <action>" or on its own.
ACTIONS = {
    "maintenance mode switched on (before listing what the restore discards)": "已开启维护模式（在列出恢复将丢弃的写入之前）",
    "waited until the ERP is ready": "已等待 ERP 就绪",
    "the backup store was reachable": "备份存储原本可以访问",
    "the backup store is reachable again (its directory back)": "备份存储已恢复可访问（其目录已放回）",
    "nothing to do in the sandbox, marked done": "沙箱中无需操作，已标记为完成",
}

FAULTS = {
    "kill-erp": "ERP 进程被杀死", "hang-erp": "ERP 进程挂起", "corrupt-database": "数据库损坏",
    "delete-rows": "数据行被误删", "disk-full": "磁盘已满", "backup-store-unreachable": "备份存储不可访问",
    "upgrade-killed": "升级进行到一半时进程被杀死", "field-key-lost": "字段加密密钥丢失",
}

RUNBOOK_OUTCOMES = {"recovered": "已恢复", "not-recovered": "未恢复", "failed": "失败", "timed-out": "超时"}

CHECKS = {
    "readyz": "就绪检查", "invariants": "业务不变量检查", "business-write": "业务写入确认", "status": "运行状态检查",
    "field-key": "加密字段全部可解密", "release": "服务版本核对", "restore-test": "恢复测试",
}

# Names shown as code inside the Chinese sentences.
LITERALS = {"flag": "--fresh", "status": "erpctl status", "dry": "erpctl backup restore --dry-run", "yes": "--yes",
            "detectp": "--detect probes", "jsonl": layout.basename("drill_workload"), "readyz": "/readyz"}


def _code(text: str, esc: Callable[[str], str]) -> str:
    return f"<code>{esc(text)}</code>"


def event_html(text: str, lang: str, esc: Callable[[str], str]) -> str:
    """The event sentence as HTML in `lang` (names kept as written, as code); as written when unknown."""
    text = str(text or "")
    if lang == "en":
        return esc(text)
    if text in ACTIONS:
        return esc(ACTIONS[text])
    return _translated(text, EVENTS, esc)


def finding_html(text: str, lang: str, esc: Callable[[str], str]) -> str:
    """A finding the engine recorded, as HTML in `lang`; one written by a person is shown as written."""
    text = str(text or "")
    return esc(text) if lang == "en" else _translated(text, FINDINGS, esc)


def _translated(text: str, patterns: list, esc: Callable[[str], str]) -> str:
    for pattern, template, literal in patterns:
        m = re.fullmatch(pattern, text)
        if m is None:
            continue
        values = {k: (_code(v, esc) if k in literal else esc(v)) for k, v in m.groupdict().items()}
        values.update({k: _code(v, esc) for k, v in LITERALS.items()})
        groups = m.groupdict()
        if "kind" in groups:
            values["kind_zh"] = esc(FAULTS.get(groups["kind"], groups["kind"]))
        if "st" in groups:
            values["st_zh"] = esc(RUNBOOK_OUTCOMES.get(groups["st"], groups["st"]))
        if "act" in groups:
            values["act_zh"] = esc(ACTIONS[groups["act"]]) if groups["act"] in ACTIONS else _code(groups["act"], esc)
        return template.format(**values)
    return esc(text)


def check_html(name: str, lang: str, esc: Callable[[str], str]) -> str:
    """A check's name: translated, with the name the record uses beside it as code."""
    name = str(name or "")
    if lang == "en" or name not in CHECKS:
        return esc(name)
    return f"{esc(CHECKS[name])} {_code(name, esc)}"
