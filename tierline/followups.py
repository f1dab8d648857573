"""Reading a follow-up against the conversation before it (issue 19). Pure: no I/O.

"That didn't work" means nothing alone; after an automated answer ("We sent you a secure link to update
your card") it says the answer did not solve the problem. Tier 1 then does not repeat its fix and hands
the contact to tier 2 with what was tried; tier 2 hands it to a person with the earlier answer in the
packet instead of trying the same thing again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from schemas.messages import Turn

#: The customer says an earlier answer or fix did not help (en, es, de, fr, pt).
_DID_NOT_WORK = re.compile(
    r"\b(?:did|does|has|have|is)\s*(?:n[o']?t|not)\s+(?:work(?:ed)?|help(?:ed)?|fix(?:ed)?|solve[ds]?"
    r"|go(?:ne)?\s+through|arrive[ds]?|come|change[ds]?)\b"
    r"|\b(?:didn'?t|doesn'?t|hasn'?t|haven'?t|isn'?t|wasn'?t)\s+(?:work|help|fix|solve|go\s+through|arrive"
    r"|come|change|working)"
    r"|\bnot\s+working\b|\bno\s+(?:luck|change)\b"
    r"|\bstill\s+(?:not|no|can'?t|cannot|won'?t|doesn'?t|isn'?t|declin\w*|fail\w*|broken|get(?:ting)?\s+"
    r"(?:an?\s+|the\s+)?(?:error|decline)|the\s+same|(?:says|shows)\b)"
    r"|\b(?:never|haven'?t|have\s+not|didn'?t|did\s+not)\s+(?:got|get|gotten|receive[ds]?)\b"
    r"|\bsame\s+(?:problem|issue|error)\b|\b(?:the\s+)?link\s+(?:is\s+|was\s+)?(?:broken|expired|invalid|dead)\b"
    # es, de, fr, pt
    r"|\bno\s+(?:funcion[óo]|funciona|sirvi[óo])\b|\bsigue\s+(?:sin|fallando|rechaz\w*)\b"
    r"|\b(?:hat|hatte)\s+nicht\s+(?:funktioniert|geklappt)\b|\bfunktioniert\s+(?:immer\s+noch\s+)?nicht\b"
    r"|\bimmer\s+noch\b"
    r"|\bn'a\s+pas\s+(?:march[ée]|fonctionn[ée])\b|\bne\s+(?:marche|fonctionne)\s+(?:toujours\s+)?pas\b"
    r"|\btoujours\s+pas\b"
    r"|\bn[ãa]o\s+(?:funcionou|funciona|deu\s+certo)\b|\bainda\s+n[ãa]o\b",
    re.IGNORECASE,
)

#: Roles of turns that told the customer something automatically (a person's reply is not one).
_AUTOMATED = frozenset({"assistant"})


def last_automated_answer(history: Sequence[Turn]) -> str | None:
    """The text of the last turn before the customer's new message, if tierline's automation said it."""
    for turn in reversed(history):
        if turn.role == "customer":
            continue
        return turn.text if turn.role in _AUTOMATED else None
    return None


def did_not_work(text: str, history: Sequence[Turn]) -> str | None:
    """The earlier automated answer the customer says did not help, or None (no such answer before, or
    the text does not say so)."""
    answer = last_automated_answer(history)
    if answer is None or not _DID_NOT_WORK.search(text or ""):
        return None
    return answer
