"""Guardrails on untrusted text: prompt-injection detection and redaction of secrets and card data.

Shared by every tier (the router computes the flag where a text enters; Tier 1 and Tier 2 check again what
they receive). Both functions are pure and fast (regexes compiled once at import). ``detect_injection``
flags text that tries to instruct the system; a finding never grants anything, it only takes away: the
policy engine refuses every automatic money-moving action for a flagged text (``guardrail`` rule of the
policy), and the text is otherwise answered as data. ``redact`` runs before text reaches logs, prompts,
audit or the case store.

What the detector looks through before matching: NFKC (full-width, ligatures, math letters), zero-width
and other invisible format characters, look-alike letters from other scripts (Cyrillic / Greek
homoglyphs), accents (so "instrucciones" and "précédentes" match unaccented patterns), digits inside
words ("1gn0re"), e-mail quote markers ("> "), and the text ROT13-ed; base64 and hex runs are decoded.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict

InjectionCategory = Literal[
    "instruction_override",
    "privilege_escalation",
    "authority_claim",
    "role_play",
    "fake_tool_output",
    "prompt_exfiltration",
    "policy_bypass",
    "encoded_payload",
    "cross_account",
]

#: The flag a text carries on the tier requests (``flags``) and in the policy context when it is flagged.
INJECTION_FLAG = "prompt_injection"


class InjectionFinding(BaseModel):
    model_config = ConfigDict(frozen=True)
    category: InjectionCategory
    rule: str
    excerpt: str  # the matched text (redacted, at most 120 characters)


# --------------------------------------------------------------------------- injection patterns
_W = r"(?:\s+\S+){0,3}?\s+"  # up to three filler words: "ignore ALL OF your previous instructions"
_RULES_NOUN = (
    r"(?:instructions?|rules?|prompts?|directions?|guidelines?|polic(?:y|ies)|directives?|constraints?"
    r"|restrictions?|programming|guardrails?|safeguards?|system\s+message)"
)

_INJECTION_PATTERNS: list[tuple[InjectionCategory, str, str]] = [
    # "ignore/disregard/forget ... previous instructions / your rules"
    (
        "instruction_override",
        "ignore_instructions",
        r"\b(?:ignore|disregard|forget|override|bypass|circumvent)\b"
        + _W
        + r"(?:(?:all|any|the|your|my|these|those|previous|prior|above|earlier|existing|current|original"
        r"|system|safety|refund|billing|internal|standard|usual|normal)\s+){0,4}" + _RULES_NOUN + r"\b",
    ),
    (
        "instruction_override",
        "new_instructions",
        r"\b(?:new|updated|revised|real|actual|true)\s+(?:system\s+)?(?:instructions?|rules|directives?)\s*[:\-]",
    ),
    (
        "instruction_override",
        "from_now_on",
        r"\b(?:from\s+now\s+on|henceforth|for\s+the\s+rest\s+of\s+this\s+conversation)\b.{0,60}"
        r"\byou\s+(?:will|must|shall|are\s+to)\s+(?:now\s+|only\s+|always\s+)?(?:ignore|obey|act|behave|"
        r"respond\s+only|answer\s+only|approve|refund|comply|follow\s+my|be\s+an?|no\s+longer)\b",
    ),
    (
        "instruction_override",
        "do_not_follow",
        r"\b(?:do\s+not|don'?t|stop)\s+(?:follow(?:ing)?|obey(?:ing)?|apply(?:ing)?|enforc(?:e|ing))\s+"
        r"(?:\S+\s+){0,3}" + _RULES_NOUN + r"\b",
    ),
    # "system override", "admin mode", "developer mode", "sudo", "god mode"
    (
        "privilege_escalation",
        "system_override",
        r"\b(?:system|admin(?:istrator)?|root|security|emergency|maintenance|master)\s+"
        r"(?:override|overrides|bypass|access\s+granted|unlock(?:ed)?|command|authori[sz]ation\s+code)\b",
    ),
    (
        "privilege_escalation",
        "mode_switch",
        r"\b(?:you\s+are|you'?re|switch(?:ing)?|enter(?:ing)?|activate|enable|now\s+in|go\s+into|put\s+\w+\s+in(?:to)?)"
        r"\b.{0,30}\b(?:admin(?:istrator)?|developer|debug|god|sudo|root|maintenance|unrestricted|jailbreak|dan|"
        r"privileged|superuser)\s+mode\b",
    ),
    ("privilege_escalation", "sudo", r"(?:^|\s)sudo\s+\w+|\bjailbreak(?:ed|ing)?\b|\bDAN\s+mode\b"),
    (
        "privilege_escalation",
        "you_are_now",
        r"\byou\s+are\s+(?:now|no\s+longer)\s+(?:an?\s+)?(?:unrestricted|unfiltered|uncensored|free|allowed|able"
        r"|authori[sz]ed|permitted|bound|limited|restricted|required|a\s+different|my)\b",
    ),
    # claims of authority / approval made in the message itself
    (
        "authority_claim",
        "executive_authorises",
        r"\b(?:as|i\s+am|i'?m|this\s+is)\s+(?:the|your|a|an)?\s*(?:ceo|cfo|cto|coo|founder|owner\s+of\s+"
        r"(?:this|your)\s+company|head\s+of\s+\w+|vp\s+of\s+\w+|director|manager|supervisor|team\s+lead|admin"
        r"(?:istrator)?|developer|engineer|security\s+team|billing\s+team|support\s+lead|compliance\s+officer)\b"
        r".{0,80}\b(?:authori[sz](?:e|ing|ed)|(?:instruct|order|command|direct)(?:ing)?\s+you|override|grant(?:ing)?"
        r"|approv(?:e|ing)\s+(?:this\s+|the\s+|a\s+|an\s+|my\s+)?(?:refund|exception|override|payout|transfer))",
    ),
    (
        "authority_claim",
        "pre_approved",
        r"\b(?:already|been|was|is|has\s+been|were)\s+(?:pre-?)?(?:approved|authori[sz]ed|cleared|signed\s+off)"
        r"\s+(?:by|from)\s+(?:the\s+|your\s+|a\s+|an\s+)?(?:ceo|cfo|manager|supervisor|management|team\s+lead|"
        r"your\s+(?:boss|team)|stripe|legal|finance|support|billing|admin|security)\b",
    ),
    (
        "authority_claim",
        "impersonate_staff",
        r"\b(?:i\s+am|i'?m|this\s+is|we\s+are|speaking\s+as)\s+(?:an?\s+|the\s+)?(?:(?:stripe|openai|"
        r"anthropic|tierline)\s+(?:support|staff|employee|engineer|team|security|admin)|from\s+(?:stripe|openai|"
        r"anthropic|your\s+(?:security|engineering|billing|support|it|fraud)\s+team)|your\s+(?:own\s+)?"
        r"(?:developer|engineer|admin|operator|creator|supervisor|manager|boss))\b",
    ),
    (
        "authority_claim",
        "authorisation_code",
        r"\b(?:authori[sz]ation|override|admin|security|verification)\s+(?:code|token|key|password)\s*"
        r"(?:is|=|:)\s*[A-Za-z0-9\-]{4,}",
    ),
    # role-play framing
    (
        "role_play",
        "pretend",
        r"\b(?:pretend|imagine|suppose)\s+(?:that\s+|for\s+a\s+(?:moment|second)\s+(?:that\s+)?)?"
        r"(?:you\s+are|you'?re|to\s+be|you\s+have|there\s+(?:is|are)\s+no)\b|\b(?:act|behave|respond)\s+as\s+"
        r"(?:if\s+you|though\s+you|an?\s+(?:\w+\s+)?(?:ai|assistant|bot|model|agent|admin|employee)|my\s+)|"
        r"\b(?:roleplay|role-play|role\s+play)\b",
    ),
    (
        "role_play",
        "lets_play",
        r"\b(?:let'?s|we\s+will|we'?re\s+going\s+to)\s+play\s+a\s+game\b|\bin\s+this\s+(?:story|scenario|game|"
        r"hypothetical|role-?play)\b.{0,60}\byou\b",
    ),
    (
        "role_play",
        "hypothetical_ai",
        r"\b(?:hypothetically|in\s+theory|for\s+a\s+novel|for\s+research)\b.{0,60}\b(?:an?\s+ai|assistant|bot|"
        r"you)\b.{0,40}\b(?:without|no)\s+(?:rules|restrictions|limits|policy|filters)",
    ),
    # text dressed up as system/tool messages
    (
        "fake_tool_output",
        "role_tags",
        r"(?:<\|?\s*(?:im_start|im_end|system|assistant|tool|function|endoftext)\s*\|?>|</?(?:system|tool_result|"
        r"tool_output|function_result|function_call|assistant|instructions?)>|\[/?(?:system|inst|tool|assistant|"
        r"admin)\]|^\s*#{1,4}\s*(?:system|assistant|tool|instruction)s?\s*:?\s*$|^\s*(?:system|assistant|tool)"
        r"\s*:\s)",
    ),
    (
        "fake_tool_output",
        "json_role",
        r"[\"']\s*role\s*[\"']\s*:\s*[\"']\s*(?:system|tool|assistant|function|developer)\s*[\"']|"
        r"[\"'](?:tool_call_id|function_call|tool_calls)[\"']\s*:",
    ),
    (
        "fake_tool_output",
        "fake_result",
        r"\b(?:tool|function|policy(?:\s+engine)?|policy_engine)\s*(?:output|result|response|verdict)"
        r"\s*[:=]\s*.{0,40}\b(?:approved|allow(?:ed)?|authori[sz]ed|success|granted|eligible|true)\b",
    ),
    (
        "fake_tool_output",
        "fake_policy_field",
        r"\b(?:refund_approved|policy_override|is_admin|admin|approved|bypass_policy|verified)\s*[:=]\s*"
        r"(?:true|1|yes)\b",
    ),
    # asking for hidden instructions
    (
        "prompt_exfiltration",
        "reveal_prompt",
        r"\b(?:reveal|show|print|repeat|output|display|tell\s+me|what\s+(?:is|are|were)|give\s+me|dump|leak"
        r"|list)\b.{0,30}\b(?:your|the)\s+(?:system\s+prompt|initial\s+prompt|hidden\s+(?:prompt|instructions)"
        r"|(?:original|internal|secret|hidden|system)\s+(?:instructions|rules)|api\s+keys?|secret\s+keys?)\b|"
        r"\b(?:reveal|print|repeat|output|dump|leak|show\s+me)\s+(?:all\s+(?:of\s+)?)?your\s+(?:instructions|"
        r"prompt|configuration)\b",
    ),
    # attempts to talk the policy away
    (
        "policy_bypass",
        "policy_changed",
        r"\b(?:the\s+|your\s+|refund\s+)?polic(?:y|ies)\s+(?:has|have)\s+(?:been\s+)?(?:changed|updated|"
        r"suspended|lifted|waived|removed|disabled)\b|\b(?:limits?|caps?|polic(?:y|ies)|rules?)\s+(?:do(?:es)?\s+"
        r"not|don'?t|doesn'?t)\s+apply\s+(?:to\s+(?:me|this|us)|here|today)\b",
    ),
    (
        "policy_bypass",
        "you_are_allowed",
        r"\byou\s+(?:are|'re)\s+(?:now\s+)?(?:allowed|authori[sz]ed|permitted|cleared)\s+to\s+"
        r"(?:refund|issue|approve|override|bypass|skip|ignore|waive|credit|transfer|send|give)\b",
    ),
    (
        "policy_bypass",
        "without_checks",
        r"\b(?:refund|credit|approve|pay|transfer)\b.{0,40}\b(?:without|skip(?:ping)?|bypass(?:ing)?|no)\s+"
        r"(?:any\s+)?(?:checks?|verification|approval|review|policy|limits?|escalation)\b",
    ),
    (
        "policy_bypass",
        "execute_tool",
        r"\b(?:call|invoke|execute|run|trigger|use)\s+(?:the\s+)?(?:tool|function)\s*[:`\"'(]?\s*"
        r"(?:refund|issue_refund|retry_payment|change_plan|cancel_subscription|update_billing_details)\b|"
        r"\b(?:issue_refund|refund_charge|stripe\.refund)\s*\(",
    ),
]


# --------------------------------------------------------------------------- broader patterns (issue 18)
# Other languages (matched on accent-folded text): es / de / fr / pt / it / nl.
_FOREIGN_RULES = (
    r"(?:instruc\w*|instrucc\w*|istruzion\w*|anweisung\w*|instruktion\w*|regeln?|regles?|reglas?|regras?"
    r"|regole|richtlinie\w*|directiv\w*|diretriz\w*|consignes?|politica\w*|politique\w*|vorgaben?"
    r"|normas?|limites?|beschrankung\w*|einschrankung\w*|voorschriften|instructies|regels)"
)
_FOREIGN_IGNORE = (
    r"(?:ignor\w*|olvid\w*|vergiss\w*|vergessen|oubli\w*|esquec\w*|esqueç\w*|dimentic\w*|missacht\w*"
    r"|desconsider\w*|descart\w*|negeer\w*|vergeet|haz\s+caso\s+omiso\s+de|no\s+sigas|ne\s+suis\s+pas"
    r"|nao\s+sig\w*|befolge\s+nicht|salta\w*|sautez|uberspring\w*|umgeh\w*|contourne\w*|burl\w*)"
)
_ROLE_NAME = (
    r"(?:ai|assistant|bot|chatbot|model|llm|agent|admin(?:istrator)?|employee|manager|supervisor|developer"
    r"|system|refund\w*|billing\s+(?:agent|manager|admin)|support\s+(?:lead|manager)|dan|stan|jailbroken"
    r"\s+\w+|\w+bot|\w+gpt)"
)
_STAFF = (
    r"(?:admin(?:istrator)?|sys\s*admin|system\s+admin(?:istrator)?|developer|dev|engineer|operator|owner"
    r"|creator|programmer|supervisor|manager|boss|ceo|cto|cfo|founder|head\s+of\s+(?:billing|support)"
    r"|billing\s+(?:manager|lead|admin)|support\s+(?:lead|manager|supervisor))"
)
_MONEY_WORDS = (
    r"(?:refund\w*|credit\w*|free|waive\w*|discount\w*|cancel\w*|downgrad\w*|upgrad\w*|plan|exception"
    r"|money\s+back|compensation|reimburs\w*|chargeback|payout|coupon|enterprise|retr(?:y|ied))"
)

_MORE_PATTERNS: list[tuple[InjectionCategory, str, str]] = [
    # ---- instruction override, other languages
    (
        "instruction_override",
        "ignore_instructions_foreign",
        r"\b" + _FOREIGN_IGNORE + r"(?:\s+\S+){0,5}?\s+" + _FOREIGN_RULES + r"\b",
    ),
    (
        "instruction_override",
        "new_instructions_foreign",
        r"\b(?:nuevas\s+instrucciones|neue\s+anweisungen|nouvelles\s+instructions|novas\s+instrucoes"
        r"|nuove\s+istruzioni)\s*[:\-]",
    ),
    (
        "instruction_override",
        "ignore_everything",
        r"\b(?:ignore|disregard|forget)\s+(?:all\s+|everything\s+|anything\s+)(?:that\s+)?(?:(?:you\s+(?:were|"
        r"have\s+been)\s+(?:told|given|trained)|written|said|stated)\s+)?(?:above|before|previously|earlier|so\s+"
        r"far)\b|\b(?:ignore|disregard|forget)\s+(?:all\s+)?(?:of\s+)?(?:the\s+)?(?:above|preceding)\b"
        r"|\b(?:ignore|disregard|forget)\s+(?:all\s+)?(?:the\s+|your\s+)?(?:previous|prior|earlier)\s+"
        r"(?:context|conversation|prompts?|system\s+messages?)\b",
    ),
    (
        "instruction_override",
        "override_rules",
        r"\b(?:your|the|all)\s+(?:previous\s+|prior\s+|original\s+|safety\s+|refund\s+)?"
        + _RULES_NOUN
        + r"\s+(?:are|is|have\s+been|has\s+been)\s+(?:now\s+)?(?:void|cancel(?:l)?ed|revoked|obsolete|"
        r"superseded|replaced|suspended|no\s+longer\s+(?:valid|apply|in\s+effect))",
    ),
    (
        "instruction_override",
        "note_to_ai",
        r"\b(?:note|message|instructions?|attention|reminder)\s+(?:to|for)\s+(?:the\s+|any\s+)?(?:ai|llm|bot|"
        r"assistant|agent|language\s+model|model|support\s+bot)s?\b|\bif\s+you\s+are\s+(?:an?\s+)?(?:ai|llm|"
        r"bot|assistant|language\s+model|automated\s+(?:system|agent))\b|\b(?:dear|hey|hi)\s+(?:ai|llm|bot|"
        r"assistant|language\s+model)\s*[,:!]",
    ),
    # ---- chat templates and fake turns
    (
        "fake_tool_output",
        "chat_template",
        r"<<\s*/?\s*sys\s*>>|\[/?\s*inst\s*\]|<\|[a-z_]{2,20}\|>|<\s*/?\s*s\s*>(?=\s*\[)|^\s*#{1,4}\s*(?:system|"
        r"assistant|tool|instruction|response|human|user|ai)s?\s*:|(?:^|\n)\s*(?:human|user)\s*:.{0,400}\n\s*"
        r"(?:assistant|ai|bot|agent)\s*:",
    ),
    (
        "fake_tool_output",
        "fake_turn",
        r"(?:^|[.!?]\s+)(?:assistant|ai|bot|chatbot|support\s+bot|support\s+agent|tierline|agent|system)\s*"
        r"(?:\(\w+\)\s*)?:\s+(?:sure|ok(?:ay)?|certainly|of\s+course|yes|understood|done|approved|i\s+(?:have|"
        r"will|'ll|can|am)|your\s+refund|the\s+refund|refund|confirmed|as\s+requested)",
    ),
    (
        "fake_tool_output",
        "fake_json_tool",
        r"[\"'](?:tool|function|tool_name|function_name|tool_call|tool_result|function_result|tool_output|"
        r"action|name)[\"']\s*:\s*[\"']\s*(?:refund\w*|issue_refund|retry_payment|change_plan|cancel_subscription|"
        r"update_billing_details|policy\w*|approve\w*|check_policy|grant\w*)",
    ),
    (
        "fake_tool_output",
        "fake_json_result",
        r"[\"'](?:result|status|decision|verdict|outcome|policy|policy_check|policy_result|approval|response|"
        r"approved|authori[sz]ed|allowed|eligible|override)[\"']\s*:\s*[\"']?\s*(?:approved|allow(?:ed)?|granted|"
        r"authori[sz]ed|pass(?:ed)?|true|yes|eligible)\b",
    ),
    (
        "fake_tool_output",
        "fake_result_line",
        r"\[\s*(?:tool|function)[ _\-]?(?:result|output|response|call)\s*\]"
        r"|\b(?:tool|function|policy[ _]?check|policy[ _]?engine|system)\s*"
        r"(?:output|result|response|verdict|returned)\s*(?:[:=]|was|is)\s*.{0,40}"
        r"\b(?:approved|allow(?:ed)?|authori[sz]ed|granted|eligible)\b",
    ),
    # ---- claimed authority
    (
        "authority_claim",
        "i_am_staff",
        r"\b(?:i\s+am|i'?m|this\s+is|we\s+are|speaking\s+as|as)\s+(?:the|your|an?)\s+(?:own\s+|lead\s+|senior\s+)?"
        + _STAFF
        + r"\b(?!\s+(?:of|for|on|at)\s+(?:our|my|the\s+account|acme|\w+'s))(?:\s+(?:of|for|at|here|on)\s+"
        r"(?:this|the|your)\s+(?:system|bot|platform|service|company|assistant|app|support|tierline))?"
        r"(?=.{0,120}\b(?:refund|credit|approv|authori[sz]|override|bypass|cap|limit|policy|rule|instruct|"
        r"cancel|waive|free|plan|grant|exception|you\s+(?:must|should|can|will|may)))",
    ),
    (
        "authority_claim",
        "staff_approved",
        r"\byour\s+(?:own\s+)?(?:bot|assistant|ai|agent|colleague|coworker|rep(?:resentative)?|support(?:\s+team"
        r"|\s+agent)?|team|manager|supervisor|boss|ceo|cfo|admin|billing\s+team|finance\s+team|sales\s+(?:team|"
        r"rep)|account\s+manager)\s+(?:already\s+|has\s+|have\s+|had\s+|personally\s+)*(?:approved|authori[sz]ed|"
        r"promised|agreed|confirmed|okay?e?d|ok'?d|signed\s+off|guaranteed|said\s+(?:i|we)\s+(?:would|will|could"
        r"|can|should))\b.{0,80}\b" + _MONEY_WORDS,
    ),
    (
        "authority_claim",
        "approved_by_staff",
        r"\b(?:approved|authori[sz]ed|signed\s+off|cleared|ok'?d|greenlit)\s+(?:by|from)\s+(?:your|the)\s+(?:"
        r"support\s+|billing\s+|finance\s+)?(?:manager|supervisor|team\s+lead|lead|boss|admin(?:istrator)?|"
        r"ceo|cfo|director|head|management|developer|engineer|security\s+team|billing\s+team|support\s+team)\b",
    ),
    (
        "authority_claim",
        "authority_foreign",
        r"\b(?:soy|sou|je\s+suis|ich\s+bin)\s+(?:el\s+|la\s+|o\s+|a\s+|l'|le\s+|la\s+|der\s+|die\s+|dein\s+|ihr\s+"
        r"|ton\s+|votre\s+|tu\s+|seu\s+|sua\s+)?(?:administrad\w*|administrat\w*|admin|desarrollador\w*|"
        r"developpeur|desenvolvedor\w*|entwickler\w*|gerente|directeur|direktor|manager|chef|jefe|supervisor\w*)"
        r"\b|\b(?:tu|su|seu|sua|ton|votre|dein|ihr)\s+(?:gerente|jefe|supervisor\w*|responsable|manager|chef|"
        r"vorgesetzter?)\s+(?:ya\s+|ja\s+|deja\s+|a\s+deja\s+|hat\s+)?(?:aprob\w*|autoriz\w*|approuv\w*|a\s+"
        r"approuve|genehmig\w*|freigegeben)",
    ),
    (
        "policy_bypass",
        "cap_lifted",
        r"\b(?:the|your|refund|automatic|approval|spending|agent)\s+(?:refund\s+)?(?:cap|limit|ceiling|maximum)s?"
        r"\s+(?:has|have|was|were|is|are)\s+(?:now\s+)?(?:been\s+)?(?:lifted|raised|removed|waived|increased|"
        r"disabled|suspended|overridden|lifted|gone|turned\s+off)\b|\b(?:lift(?:ed)?|remov(?:e|ed)|rais(?:e|ed)|"
        r"disabl(?:e|ed)|waiv(?:e|ed))\s+(?:the|your)\s+(?:refund\s+)?(?:cap|limit)s?\s+for\s+(?:me|this|us)\b",
    ),
    (
        "policy_bypass",
        "policy_bypass_foreign",
        r"\b(?:sin\s+(?:limites?|verificacion|aprobacion|restricciones)|ohne\s+(?:limit\w*|prufung|genehmigung|"
        r"einschrankung\w*)|sans\s+(?:limites?|verification|approbation|restriction)|sem\s+(?:limites?|"
        r"verificacao|aprovacao|restricoes))\b",
    ),
    # ---- role play
    (
        "role_play",
        "act_as",
        r"\b(?:act|behave|respond|answer|reply|speak)\s+(?:now\s+)?(?:as|like)\s+(?:if\s+you|though\s+you|an?\s+"
        r"(?:\w+\s+){0,3}?" + _ROLE_NAME + r"\b|the\s+(?:\w+\s+){0,3}?" + _ROLE_NAME + r"\b|dan\b|my\s+)",
    ),
    (
        "role_play",
        "dan",
        r"\bdo\s+anything\s+now\b|\b(?:you\s+are|you'?re|become|as)\s+(?:now\s+)?dan\b|\bdan\s*(?:mode|prompt|"
        r"jailbreak|\d+(?:\.\d+)?)\b|\bdeveloper\s+mode\s+(?:enabled|on|output)\b",
    ),
    (
        "role_play",
        "you_are_now_named",
        r"\b(?:you\s+are|you'?re)\s+now\s+(?:called\s+|named\s+|known\s+as\s+)?(?:an?\s+|the\s+)?\w*(?:bot|gpt|ai"
        r"|agent|assistant)\b|\bfrom\s+now\s+on\s+,?\s*you\s+(?:are|'re)\b",
    ),
    (
        "role_play",
        "role_play_foreign",
        r"\b(?:finge|finja|fingi|imagina|stell\s+dir\s+vor|tu\s+so\s+als|fais\s+comme\s+si|imagine\s+que\s+tu|"
        r"faites\s+comme\s+si|fai\s+finta)\b.{0,40}\b(?:eres|es|e|sei|bist|etais|etes|voce|tu|du)\b|\b(?:actua|"
        r"aja|agis|agissez|handle|verhalte\s+dich)\s+(?:como|comme|wie|als)\s+(?:si|se|un|una|um|uma|ein|eine|le"
        r"|la|el|o|a)?\b|\b(?:ahora\s+eres|agora\s+voce\s+e|tu\s+es\s+maintenant|du\s+bist\s+(?:jetzt|nun|ab\s+"
        r"sofort)|vous\s+etes\s+maintenant|ora\s+sei)\b",
    ),
    (
        "privilege_escalation",
        "mode_foreign",
        r"\b(?:modo|mode|modus)\s+(?:administrador|admin|desarrollador|developpeur|entwickler|desenvolvedor|"
        r"dios|dieu|deus|sin\s+restricciones|sans\s+restriction)\b|\b(?:administrator|admin|entwickler)modus\b",
    ),
    # ---- another customer's account
    (
        "cross_account",
        "other_account",
        r"\b(?:on|for|of|from|to|in|into)\s+(?:another|a\s+different|some\s+other|someone\s+else'?s|somebody\s+"
        r"else'?s|the\s+other)\s+(?:customer|account|user|client|company|person|subscription|card)\b"
        r"|\b(?:another|a\s+different|some\s+other|other)\s+(?:customer|user|client|person|company)'s\b"
        r"|\b(?:someone|somebody)\s+else'?s\s+(?:account|subscription|plan|card|charge|payment|invoice)\b"
        r"|\b(?:my\s+|our\s+)?(?:friend|colleague|coworker|co-worker|neighbou?r|brother|sister|wife|husband|partner|boss|"
        r"client|ex|roommate|mother|father|mom|dad|son|daughter|cousin|uncle|aunt)'?s\s+(?:account|subscription|"
        r"plan|card|charge|payment|invoice|refund|billing)\b|\b(?:customer|account|user|client)\s+(?:id\s+|"
        r"number\s+|#\s*)?:?\s*cus_[A-Za-z0-9]{4,}",
    ),
    (
        "cross_account",
        "other_account_email",
        r"\b(?:refund|cancel|downgrade|upgrade|change|switch|retry|charge|credit|close|delete|transfer|move)\b"
        r".{0,50}\b(?:account|subscription|plan|card|payment)s?\s+(?:of|for|belonging\s+to|owned\s+by)\s+"
        r"(?:\[EMAIL\]|\S+@\S+|(?:mr|mrs|ms|dr)\.?\s+\w+|(?:another|a\s+different|my)\s+\w+)",
    ),
]

#: Uppercase role markers written like a chat template or a system notice ("SYSTEM:", "ADMIN NOTE:").
_CASE_SENSITIVE_PATTERNS: list[tuple[InjectionCategory, str, str]] = [
    (
        "fake_tool_output",
        "upper_role_marker",
        r"\b(?:SYSTEM|ASSISTANT|ADMIN|DEVELOPER|OPERATOR|INSTRUCTIONS?|OVERRIDE|AI|TOOL|FUNCTION)"
        r"(?:\s+(?:MESSAGE|NOTE|PROMPT|NOTICE|UPDATE|OUTPUT|RESULT|RESPONSE|INSTRUCTIONS?))?\s*:",
    ),
]

_INJECTION_PATTERNS.extend(_MORE_PATTERNS)

_COMPILED_INJECTION = [
    (category, rule, re.compile(pattern, re.IGNORECASE | re.MULTILINE | re.DOTALL))
    for category, rule, pattern in _INJECTION_PATTERNS
] + [
    (category, rule, re.compile(pattern, re.MULTILINE | re.DOTALL))
    for category, rule, pattern in _CASE_SENSITIVE_PATTERNS
]

_ZERO_WIDTH = re.compile("[\u200b-\u200f\u2028-\u202f\u2060-\u2064\ufeff\u00ad]")
_SPACES = re.compile(r"[ \t\f\v]+")
_URL = re.compile(r"\bhttps?://\S+", re.IGNORECASE)
_BASE64_BLOB = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/]{32,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX_BLOB = re.compile(r"\b(?:[0-9a-fA-F]{2}[ ]?){24,}\b")
_EXCERPT_MAX = 120


# Look-alike letters of other scripts that render as Latin ones (Unicode confusables, the common subset).
_CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "а": "a",
        "в": "b",
        "е": "e",
        "ё": "e",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "ѕ": "s",
        "і": "i",
        "ї": "i",
        "ј": "j",
        "ԁ": "d",
        "ԛ": "q",
        "ԝ": "w",
        "ӏ": "l",
        "ɡ": "g",
        "ь": "b",
        "п": "n",
        "г": "r",
        "д": "d",
        "л": "n",
        "А": "A",
        "В": "B",
        "Е": "E",
        "К": "K",
        "М": "M",
        "Н": "H",
        "О": "O",
        "Р": "P",
        "С": "C",
        "Т": "T",
        "Х": "X",
        "У": "Y",
        "І": "I",
        "Ј": "J",
        "Ѕ": "S",
        "Ԁ": "D",
        "Ԛ": "Q",
        "Ԝ": "W",
        # Greek
        "α": "a",
        "β": "b",
        "ε": "e",
        "η": "n",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "γ": "y",
        "ω": "w",
        "ς": "s",
        "σ": "o",
        "Α": "A",
        "Β": "B",
        "Ε": "E",
        "Ζ": "Z",
        "Η": "H",
        "Ι": "I",
        "Κ": "K",
        "Μ": "M",
        "Ν": "N",
        "Ο": "O",
        "Ρ": "P",
        "Τ": "T",
        "Υ": "Y",
        "Χ": "X",
        # Latin look-alikes (IPA, small capitals, dotless i)
        "ɑ": "a",
        "ɩ": "i",
        "ı": "i",
        "ʏ": "y",
        "ɪ": "i",
        "ᴀ": "a",
        "ᴄ": "c",
        "ᴅ": "d",
        "ᴇ": "e",
        "ɢ": "g",
        "ʜ": "h",
        "ᴊ": "j",
        "ᴋ": "k",
        "ʟ": "l",
        "ᴍ": "m",
        "ɴ": "n",
        "ᴏ": "o",
        "ᴘ": "p",
        "ʀ": "r",
        "ꜱ": "s",
        "ᴛ": "t",
        "ᴜ": "u",
        "ᴠ": "v",
        "ᴡ": "w",
        "ᴢ": "z",
        # quotes and dashes
        "\u2018": "'",
        "\u2019": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
    }
)
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_LEET_WORD = re.compile(r"(?<![\w@$])(?=[\w@$]*[A-Za-z])(?=[\w@$]*[013457@$])[\w@$]{3,}")
_QUOTE_PREFIX = re.compile(r"(?m)^[ \t]*(?:>[ \t]?)+")
_ROT13 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)


def _normalise(text: str) -> str:
    """Fold look-alikes (full-width, ligatures), drop zero-width chars and soft hyphens, squeeze spaces."""
    folded = unicodedata.normalize("NFKC", text)
    folded = _ZERO_WIDTH.sub("", folded)
    folded = "".join(ch for ch in folded if ch in "\n\t" or unicodedata.category(ch) != "Cf")
    return _SPACES.sub(" ", folded)


def _fold(normalised: str) -> str:
    """Homoglyphs to Latin, accents off, digits inside words to letters, e-mail quote markers off."""
    text = normalised.translate(_CONFUSABLES)
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    text = _LEET_WORD.sub(lambda m: m.group(0).translate(_LEET), text)
    return _QUOTE_PREFIX.sub("", text)


def _printable_ratio(raw: bytes) -> tuple[float, str]:
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return 0.0, ""
    if not decoded:
        return 0.0, ""
    printable = sum(1 for ch in decoded if ch.isprintable() or ch in "\n\r\t")
    return printable / len(decoded), decoded


def _decoded_text_blobs(text: str) -> list[tuple[str, str]]:
    """(blob, decoded) for base64 / hex runs that decode to readable prose (URLs are not inspected)."""
    found: list[tuple[str, str]] = []
    without_urls = _URL.sub(" ", text)
    for match in _BASE64_BLOB.finditer(without_urls):
        blob = match.group(0)
        padded = blob + "=" * (-len(blob) % 4)
        try:
            raw = base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            continue
        ratio, decoded = _printable_ratio(raw)
        if ratio >= 0.9 and re.search(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}", decoded):
            found.append((blob, decoded))
    for match in _HEX_BLOB.finditer(without_urls):
        blob = match.group(0)
        try:
            raw = bytes.fromhex(blob.replace(" ", ""))
        except ValueError:
            continue
        ratio, decoded = _printable_ratio(raw)
        if ratio >= 0.9 and re.search(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}", decoded):
            found.append((blob, decoded))
    return found


def _excerpt(text: str) -> str:
    clean = redact(text.strip())
    return clean if len(clean) <= _EXCERPT_MAX else clean[: _EXCERPT_MAX - 1] + "…"


def _match_patterns(text: str) -> InjectionFinding | None:
    """The match that starts earliest in ``text`` (ties go to the pattern listed first)."""
    best: tuple[int, InjectionCategory, str, str] | None = None
    for category, rule, pattern in _COMPILED_INJECTION:
        match = pattern.search(text)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), category, rule, match.group(0))
    if best is None:
        return None
    _, category, rule, matched = best
    return InjectionFinding(category=category, rule=rule, excerpt=_excerpt(matched))


def detect_injection(text: str) -> InjectionFinding | None:
    """The earliest injection / jailbreak / social-engineering pattern in ``text``, or ``None``.

    The text is matched as written (normalised), then folded (homoglyphs, accents, leetspeak, quotes),
    then ROT13-ed. Encoded blobs (base64, hex) that decode to prose are reported as ``encoded_payload``
    whatever they say.
    """
    if not text:
        return None
    normalised = _normalise(text)
    finding = _match_patterns(normalised)
    if finding is not None:
        return finding
    folded = _fold(normalised)
    if folded != normalised:
        finding = _match_patterns(folded)
        if finding is not None:
            return finding
    rotated = _match_patterns(folded.translate(_ROT13))
    if rotated is not None:
        return InjectionFinding(
            category="encoded_payload", rule=f"rot13_{rotated.rule}", excerpt=rotated.excerpt
        )
    blobs = _decoded_text_blobs(normalised)
    if blobs:
        blob, decoded = blobs[0]
        inner = _match_patterns(_fold(_normalise(decoded)))
        rule = f"encoded_{inner.rule}" if inner else "encoded_text"
        return InjectionFinding(category="encoded_payload", rule=rule, excerpt=_excerpt(blob))
    return None


def injection_flags(text: str | None) -> list[str]:
    """``[INJECTION_FLAG]`` when ``text`` is flagged, else ``[]`` (what the tier requests carry)."""
    return [INJECTION_FLAG] if text and detect_injection(text) is not None else []


def merge_flags(*groups: list[str] | tuple[str, ...] | None) -> list[str]:
    """The union of flag lists, in first-seen order."""
    seen: list[str] = []
    for group in groups:
        for flag in group or ():
            if flag not in seen:
                seen.append(flag)
    return seen


# --------------------------------------------------------------------------- redaction
_SECRET_PATTERNS = [
    # Stripe secret / restricted keys, webhook secrets; OpenAI-style and GitHub tokens; Slack tokens
    r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}",
    r"\bwhsec_[A-Za-z0-9+/=]{8,}",
    r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",
    r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    # AWS access key ids
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
    # JSON Web Tokens
    r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    # PEM private keys
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
]
_SECRET = re.compile("|".join(f"(?:{p})" for p in _SECRET_PATTERNS))
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9\-._~+/]{8,}=*", re.IGNORECASE)
_SECRET_FIELD = re.compile(
    r"\b((?:aws_)?secret(?:_access)?(?:_key)?|api[_\- ]?key|access[_\- ]?token|auth[_\- ]?token|password"
    r"|passwd|pwd|client[_\- ]?secret|private[_\- ]?key)(\s*[:=]\s*|\s+is\s+)([\"']?)[^\s\"',;]{6,}\3",
    re.IGNORECASE,
)
_EMAIL = re.compile(
    r"\b[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ \-]?[A-Z0-9]){11,30}\b", re.IGNORECASE)
_CARD = re.compile(r"(?<![\w.,])\d(?:[ \-]?\d){12,}(?![\w])")
_DIGIT_GROUP = re.compile(r"\d+")
_CVC = re.compile(
    r"\b(cvc2?|cvv2?|cid|csc|security\s+code|card\s+verification(?:\s+(?:code|value))?)"
    r"(\s*(?:number|no\.?|code)?\s*(?:is|:|=|#)?\s*)\d{3,4}\b",
    re.IGNORECASE,
)
_EXPIRY = re.compile(
    r"\b(exp(?:iry|iration)?(?:\s+date)?|valid\s+thru)(\s*(?:is|:|=)?\s*)\d{1,2}\s*/\s*\d{2,4}\b",
    re.IGNORECASE,
)
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d[\d \-().]{7,18}\d|\(?\b\d{3}\)?[ .\-]\d{3}[ .\-]\d{4}\b"
    r"|\b0\d{2,4}[ \-]\d{3,4}[ \-]?\d{3,4}\b)"
)


_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn_ok(digits: str) -> bool:
    reverse = digits[::-1]
    total = sum(int(ch) for ch in reverse[0::2]) + sum(_LUHN_DOUBLED[int(ch)] for ch in reverse[1::2])
    return total % 10 == 0


def _iban_ok(candidate: str) -> bool:
    compact = re.sub(r"[ \-]", "", candidate).upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


class _LuhnSpans:
    """Luhn checks of any digit span of one run in O(1), from prefix sums split by position parity."""

    def __init__(self, digits: str) -> None:
        values = [ord(ch) - 48 for ch in digits]
        size = len(values) + 1
        self._plain = [[0] * size, [0] * size]
        self._doubled = [[0] * size, [0] * size]
        for i, value in enumerate(values):
            for parity in (0, 1):
                hit = i % 2 == parity
                self._plain[parity][i + 1] = self._plain[parity][i] + (value if hit else 0)
                self._doubled[parity][i + 1] = self._doubled[parity][i] + (_LUHN_DOUBLED[value] if hit else 0)

    def ok(self, start: int, stop: int) -> bool:
        """Luhn over digits[start:stop]: the last digit is not doubled, every second one before it is."""
        keep = (stop - 1) % 2
        total = self._plain[keep][stop] - self._plain[keep][start]
        total += self._doubled[1 - keep][stop] - self._doubled[1 - keep][start]
        return total % 10 == 0


def _card_sub(match: re.Match[str]) -> str:
    """Redact Luhn-valid 13-19 digit spans made of whole digit groups ("qty 2 4242 ..." keeps the "2")."""
    run = match.group(0)
    groups = list(_DIGIT_GROUP.finditer(run))
    offsets = [0]
    for group in groups:
        offsets.append(offsets[-1] + len(group.group(0)))
    luhn = _LuhnSpans("".join(group.group(0) for group in groups))
    pieces: list[str] = []
    cursor, first = 0, 0
    while first < len(groups):
        found = None
        for last in range(first, len(groups)):
            length = offsets[last + 1] - offsets[first]
            if length > 19:
                break
            if length >= 13 and luhn.ok(offsets[first], offsets[last + 1]):
                found = last  # keep the longest valid span
        if found is None:
            first += 1
            continue
        pieces.append(run[cursor : groups[first].start()])
        pieces.append("[CARD]")
        cursor = groups[found].end()
        first = found + 1
    pieces.append(run[cursor:])
    return "".join(pieces)


def _iban_sub(match: re.Match[str]) -> str:
    """The longest valid IBAN at the start of the match (the pattern may run on into following words)."""
    candidate = match.group(0)
    for end in range(len(candidate), 14, -1):
        if candidate[end - 1].isalnum() and _iban_ok(candidate[:end]):
            return "[IBAN]" + candidate[end:]
    return candidate


def _phone_sub(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[PHONE]" if 9 <= len(digits) <= 15 else match.group(0)


def redact(text: str) -> str:
    """Replace secrets, card data, emails, IBANs and phone numbers with placeholders.

    Placeholders: ``[SECRET]``, ``[EMAIL]``, ``[IBAN]``, ``[CARD]`` (Luhn-valid 13-19 digits, spaces or dashes
    allowed), ``[CVC]``, ``[EXPIRY]``, ``[PHONE]``. Labels before a value ("password: ", "cvc ") are kept.
    """
    if not text:
        return text
    out = _SECRET.sub("[SECRET]", text)
    out = _BEARER.sub(lambda m: f"{m.group(1)} [SECRET]", out)
    out = _SECRET_FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}[SECRET]", out)
    if "@" in out:
        out = _EMAIL.sub("[EMAIL]", out)
    out = _IBAN.sub(_iban_sub, out)
    out = _CARD.sub(_card_sub, out)
    out = _CVC.sub(lambda m: f"{m.group(1)}{m.group(2)}[CVC]", out)
    out = _EXPIRY.sub(lambda m: f"{m.group(1)}{m.group(2)}[EXPIRY]", out)
    return _PHONE.sub(_phone_sub, out)
