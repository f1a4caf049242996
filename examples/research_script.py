"""The research pipeline's `--model scripted` stand-in: deterministic answers, no model.

Each answer depends only on the job named at the start of the system prompt and the
request's text, so tests and CI runs see the same pipeline every time: the planner
proposes fixed angles, the writer adds only what review (or the editor) asked for, and
the reviewer scores against a fixed checklist, so the first draft falls short and a
revision passes.
"""

import hashlib
import json
from typing import Any

from waypoint.models import ScriptedModel

# The angles the scripted planner proposes.
ANGLES = (
    ("Background", "how {topic} came about"),
    ("State of the art", "where {topic} stands today"),
    ("Economics", "what {topic} costs and who pays for it"),
    ("Outlook", "open problems and next steps for {topic}"),
)
# Review checklist: tag -> (what the reviewer asks for, marker the writer puts in the draft).
CHECKLIST = {
    "summary": ("Open with a short summary of the findings.", "## Summary"),
    "sources": ("Cite a source for every finding.", "(source:"),
    "gaps": ("Say plainly which parts of the research are missing.", "## Known gaps"),
}


class DemoScript:
    """Deterministic answers for `ScriptedModel`, used by `--model scripted` and the tests.

    It answers by the job named at the start of the system prompt. The writer only adds
    the parts of a good brief that reviewer feedback asks for, so the first draft falls
    short and the revision passes review."""

    def __init__(self) -> None:
        self.jobs: list[str] = []

    def __call__(self, request: Any) -> str:
        job = request.messages[0].content.split(":", 1)[0]
        self.jobs.append(job)
        body = request.messages[-1].content
        return {"PLAN": self._plan, "RESEARCH": self._research, "WRITE": self._write,
                "REVIEW": self._review}[job](body)

    @staticmethod
    def _fields(body: str) -> dict[str, Any]:
        """Parse 'key: value' lines and '- item' lists under 'key:' headers."""
        fields: dict[str, Any] = {}
        current = None
        for line in body.splitlines():
            if line.startswith("- ") and current is not None:
                fields[current].append(line[2:])
            elif ":" in line and not line.startswith(" "):
                key, _, value = line.partition(":")
                value = value.strip()
                current = key.strip() if not value else None
                fields[key.strip()] = value if value else []
        return fields

    def _plan(self, body: str) -> str:
        topic = self._fields(body)["topic"]
        return json.dumps({"subtasks": [{"label": label, "question": q.format(topic=topic)}
                                        for label, q in ANGLES]})

    def _research(self, body: str) -> str:
        seed = int(hashlib.sha256(self._fields(body)["subtask"].encode()).hexdigest()[:6], 16)
        return json.dumps({"summary": f"{seed % 5 + 3} recurring themes in the literature; "
                                      f"the most cited study dates from {2008 + seed % 15}."})

    def _write(self, body: str) -> str:
        fields = self._fields(body)
        asked = " ".join(fields.get("feedback", []))
        wants = {tag for tag in CHECKLIST if f"[{tag}]" in asked}
        findings = fields.get("findings", [])
        missing = fields.get("missing", [])
        lines = [f"# {fields['topic'][:1].upper()}{fields['topic'][1:]}: a research brief", ""]
        if "summary" in wants:
            lines += [
                "## Summary",
                f"{len(findings)} lines of research were completed"
                + (f"; {len(missing)} could not be." if missing else "."),
                "",
            ]
        lines.append("## Findings")
        for item in findings:
            text, _, source = item.rpartition(" | ")
            label, _, rest = text.partition(": ")
            summary = rest.rpartition(" :: ")[2]
            cite = f" (source: {source})" if "sources" in wants else ""
            lines.append(f"- {label}: {summary}{cite}")
        if "gaps" in wants and missing:
            lines += ["", "## Known gaps"] + [f"- {m}" for m in missing]
        edits = [n.removeprefix("editor: ") for n in fields.get("feedback", [])
                 if n.startswith("editor: ")]
        if edits:
            lines += ["", "## Editor's requests"] + [f"- addressed: {e}" for e in edits]
        return "\n".join(lines)

    def _review(self, body: str) -> str:
        draft = body.partition("draft:\n")[2]
        needs_gaps = "missing research: yes" in body
        notes = [f"[{tag}] {request}" for tag, (request, marker) in CHECKLIST.items()
                 if marker not in draft and (tag != "gaps" or needs_gaps)]
        return json.dumps({"score": 9 - 2 * len(notes), "notes": notes})


def scripted_model(**options: Any) -> ScriptedModel:
    """A ScriptedModel answering like the demo's agents; `.script.jobs` lists its calls."""
    script = DemoScript()
    model = ScriptedModel([script], model="scripted-demo", cycle=True, **options)
    model.script = script  # type: ignore[attr-defined]
    return model
