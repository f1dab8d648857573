"""Which language a customer wrote in: offline, pure, tuned for short billing texts.

Two signals, no model file and no network:

* **script**: letters outside the Latin script name the language directly (kana -> Japanese, Hangul ->
  Korean, Han without kana -> Chinese, Cyrillic -> Russian or Ukrainian, Arabic, Hebrew, Greek, Thai,
  Devanagari);
* **words and letters** for Latin-script text: each language has a short list of function words and
  billing words (``factura``, ``Rechnung``, ``facture``, ``fatura`` ...) and a few letters only it uses
  (``ñ``, ``ß``, ``ã``/``õ``, ``ł`` ...). The best-scoring language wins if it clearly beats English;
  English is the default whenever the evidence is thin (a bare "refund?" or a customer's name).

``SUPPORTED`` are the languages tierline classifies and answers in; any other detected language goes
to a person with its name in the packet (see ``services.router``).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

SUPPORTED: frozenset[str] = frozenset({"en", "es", "de", "fr", "pt"})
DEFAULT = "en"

NAMES: dict[str, str] = {
    "en": "English",
    "es": "Spanish",
    "de": "German",
    "fr": "French",
    "pt": "Portuguese",
    "it": "Italian",
    "nl": "Dutch",
    "pl": "Polish",
    "tr": "Turkish",
    "sv": "Swedish",
    "da": "Danish",
    "cs": "Czech",
    "ro": "Romanian",
    "ja": "Japanese",
    "zh": "Chinese",
    "ko": "Korean",
    "ru": "Russian",
    "uk": "Ukrainian",
    "ar": "Arabic",
    "he": "Hebrew",
    "el": "Greek",
    "th": "Thai",
    "hi": "Hindi",
    "und": "an unidentified language",
}

# Function words and billing words, lower case, accents kept. Words shared by several languages
# ("a", "de", "la", "no", "die" ...) are listed only where they are frequent; the sums decide.
_WORDS: dict[str, str] = {
    "en": """the and you your my me i is are was were it this that to of for with on in not can could
        would please have has had be been do does did don't can't i'm it's we our us will just what why
        how when there their they card invoice payment charged charge refund account subscription plan
        bill billing declined cancel send need want help thanks hi hello receipt renewal""",
    "es": """el la los las un una y de del que en por para con mi mis te se es está están estoy
        fue ha he hemos sí pero porque cómo qué cuándo dónde quiero quisiera necesito puedo pueden
        puede podrían favor gracias hola buenos buenas días usted ustedes nos nuestra nuestro su sus
        ya muy también tarjeta factura facturas pago pagos cobro cobrado cobraron cobros duplicado reembolso
        devolución cuenta suscripción rechazado rechazada rechazó cancelar cambiar plan mes pasado
        recibo envíen envíe enviar mandar correo dinero tengo hacer hizo cuota subió sin aviso veces
        dos cargo cargos iguales este esta estos bajar básico veo mismo misma transferencia sigue
        pendiente importe cuéntame chiste hablar quiero""",
    "de": """der die das den dem des ein eine einen einem ich du sie wir ihr mein meine meinen mir mich
        uns unser unsere ist sind war wurde wurden hat habe haben nicht kein keine und oder aber mit
        für von zu auf bei im ist es bitte danke hallo guten tag warum wie wann wo können könnten
        kann möchte möchten brauche brauchen senden schicken sie letzten monat rechnung rechnungen
        zahlung zahlungen karte kreditkarte abgelehnt abbuchung abgebucht erstattung rückerstattung
        konto abo abonnement kündigen tarif wechseln doppelt belastet geld noch schon auch akzeptieren
        welche welcher nehmen gibt geht meiner meinem nutzung kostet man nach zahlungsarten
        kreditkarten lastschrift überweisung""",
    "fr": """le la les un une des du de et est sont été ai avez avons je tu vous nous il elle mon ma mes
        votre vos notre nos ne pas plus que qui quoi pour par avec dans sur ce cette ces mais ou
        pourquoi comment quand où bonjour merci svp s'il plaît pouvez pourriez puis peux voudrais
        veux besoin envoyer envoyez carte facture factures paiement paiements prélèvement prélevé
        remboursement rembourser compte abonnement refusée refusé annuler changer forfait mois
        dernier reçu j'ai c'est n'est prix augmenté sans prévenir facturé deux fois souhaite
        acceptez passez moi conseiller raconte montant aimerais""",
    "pt": """o os as um uma uns umas e de do da dos das que em no na nos nas por para com meu minha
        meus minhas é são foi está estão estou tenho tem não sim mas porque como quando onde
        quero queria preciso posso pode podem podia favor obrigado obrigada olá bom dia você vocês
        seu sua nosso nossa também cartão fatura faturas pagamento pagamentos cobrança cobrado duplicado
        cobraram reembolso devolução conta assinatura recusado recusada cancelar mudar plano mês
        passado recibo enviar mandar dinheiro vocês você vezes duas mesma mesmo sem aumentou têm
        quais formas aceitam paguei continua cozinha luz sala mensalidade pendente""",
    "it": """il lo gli la le un una e di del della che è sono non per con mio mia ho hai abbiamo
        perché come quando dove vorrei voglio posso potete grazie ciao buongiorno fattura carta
        pagamento rimborso conto abbonamento annullare rifiutata mese scorso""",
    "nl": """de het een en van ik je jij u mijn ons onze is zijn was niet geen met voor op aan bij
        waarom hoe wanneer wil kunt kan graag bedankt hallo goedemorgen factuur kaart betaling
        terugbetaling rekening abonnement opzeggen geweigerd maand vorige""",
    "pl": """i w z na do nie jest są mój moja moje mam mamy się że czy jak dlaczego kiedy proszę
        dziękuję dzień dobry chcę chciałbym faktura fakturę karta karty płatność zwrot konto
        subskrypcja anulować odrzucona miesiąc""",
    "tr": """ve bir bu da de ne için ile benim bizim değil mi nasıl neden lütfen teşekkürler merhaba
        istiyorum fatura kart ödeme iade hesap abonelik iptal reddedildi""",
    "sv": """och att det är jag du vi min mitt mina inte med för på av hur varför tack hej vill kan
        faktura kortet betalning återbetalning konto prenumeration avbryta""",
    "da": """og at det er jeg du vi min mit ikke med for på af hvordan hvorfor tak hej vil kan
        faktura kortet betaling refusion konto abonnement opsige""",
    "cs": """a je jsou můj moje mám není se že jak proč prosím děkuji dobrý den chci faktura karta
        platba vrácení účet předplatné zrušit""",
    "ro": """și este sunt meu mea am nu cu pentru pe de ce cum când vă mulțumesc bună ziua vreau
        factura card plata rambursare cont abonament anula""",
}

# Letters that point to a language (weight each occurrence).
_LETTERS: dict[str, dict[str, float]] = {
    "es": {"ñ": 2.0, "¿": 3.0, "¡": 3.0},
    "de": {"ß": 3.0, "ä": 1.5, "ö": 1.0, "ü": 1.0},
    "fr": {"è": 1.5, "ê": 0.5, "à": 1.0, "ç": 0.5, "œ": 3.0, "î": 1.0, "û": 1.0},
    "pt": {"ã": 3.0, "õ": 3.0, "ç": 1.0, "â": 1.0, "ô": 0.5, "ê": 1.0},
    "pl": {"ł": 3.0, "ż": 3.0, "ś": 2.0, "ć": 2.0, "ń": 2.0, "ę": 3.0, "ą": 3.0},
    "tr": {"ğ": 3.0, "ş": 3.0, "ı": 3.0},
    "sv": {"å": 1.5},
    "da": {"ø": 2.0, "æ": 2.0, "å": 1.0},
    "cs": {"ř": 3.0, "ě": 3.0, "ů": 3.0, "č": 1.5, "š": 1.0, "ž": 1.0},
    "ro": {"ț": 3.0, "ș": 3.0, "ă": 3.0},
}

# Word endings that point to a language (once per token).
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "es": ("ción", "ciones"),
    "pt": ("ção", "ções", "ões"),
    "de": ("ung", "ungen", "keit", "heit", "lich", "isch"),
    "it": ("zione", "zioni"),
    "nl": ("lijk", "heid"),
}
# French elisions: l'abonnement, j'ai, qu'il, d'octobre.
_FRENCH_ELISION = re.compile(r"^(?:l|j|m|d|qu|n|c|s|t)'")

_LEXICON: dict[str, dict[str, float]] = {}
for _lang, _text in _WORDS.items():
    for _word in _text.split():
        _LEXICON.setdefault(_word, {})[_lang] = 1.0

_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
MIN_SCORE = 2.0  # a supported foreign language needs at least this much evidence ...
MIN_SCORE_UNSUPPORTED = 3.0  # ... an unsupported one (a person answers) a little more
MARGIN = 1.0  # ... and to beat English (and every other language) by this much
SCRIPT_SHARE = 0.3  # share of letters in a non-Latin script that settles the language


@dataclass(frozen=True)
class LanguageGuess:
    code: str  # ISO 639-1 where there is one, "und" when the script is unknown
    scores: tuple[tuple[str, float], ...] = ()

    @property
    def name(self) -> str:
        return NAMES.get(self.code, self.code)

    @property
    def supported(self) -> bool:
        return self.code in SUPPORTED


def _script_of(char: str) -> str | None:
    if not char.isalpha():
        return None
    try:
        name = unicodedata.name(char)
    except ValueError:
        return "unknown"
    for prefix, script in (
        ("LATIN", "latin"),
        ("HIRAGANA", "kana"),
        ("KATAKANA", "kana"),
        ("CJK", "han"),
        ("HANGUL", "hangul"),
        ("CYRILLIC", "cyrillic"),
        ("ARABIC", "arabic"),
        ("HEBREW", "hebrew"),
        ("GREEK", "greek"),
        ("THAI", "thai"),
        ("DEVANAGARI", "devanagari"),
    ):
        if name.startswith(prefix):
            return script
    return "unknown"


_SCRIPT_LANGUAGE = {
    "hangul": "ko",
    "arabic": "ar",
    "hebrew": "he",
    "greek": "el",
    "thai": "th",
    "devanagari": "hi",
    "unknown": "und",
}
_UKRAINIAN_LETTERS = frozenset("іїєґ")


def _by_script(text: str) -> str | None:
    scripts = Counter(s for s in map(_script_of, text) if s is not None)
    letters = sum(scripts.values())
    if not letters:
        return None
    foreign = {s: n for s, n in scripts.items() if s != "latin"}
    if sum(foreign.values()) < SCRIPT_SHARE * letters:
        return None
    if scripts["kana"]:
        return "ja"
    top = max(foreign, key=lambda s: foreign[s])
    if top == "han":
        return "zh"
    if top == "cyrillic":
        return "uk" if _UKRAINIAN_LETTERS & set(text.lower()) else "ru"
    return _SCRIPT_LANGUAGE.get(top, "und")


def language_scores(text: str) -> dict[str, float]:
    """Evidence per Latin-script language: known words (once per distinct word, plus a little for
    repeats) and characteristic letters."""
    lowered = text.lower().replace("’", "'")
    scores: dict[str, float] = dict.fromkeys(_WORDS, 0.0)
    tokens = Counter(_TOKEN.findall(lowered))
    for token, count in tokens.items():
        for lang, weight in _LEXICON.get(token, {}).items():
            scores[lang] += weight * (1.0 + 0.25 * (count - 1))
        for lang, endings in _SUFFIXES.items():
            if len(token) > 5 and token.endswith(endings):
                scores[lang] += 1.0
        if _FRENCH_ELISION.match(token) and token not in _LEXICON:
            scores["fr"] += 1.0
    for lang, letters in _LETTERS.items():
        for letter, weight in letters.items():
            n = lowered.count(letter)
            if n:
                scores[lang] += weight * min(n, 3)
    return scores


def detect_language(text: str) -> LanguageGuess:
    """The language ``text`` is written in; English when the evidence is thin. Pure and offline."""
    by_script = _by_script(text)
    if by_script is not None:
        return LanguageGuess(by_script)
    scores = language_scores(text)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    summary = tuple((lang, round(score, 2)) for lang, score in ranked[:3])
    best, best_score = ranked[0]
    if best == DEFAULT:
        return LanguageGuess(DEFAULT, summary)
    needed = MIN_SCORE if best in SUPPORTED else MIN_SCORE_UNSUPPORTED
    if best_score < needed or best_score - scores[DEFAULT] < MARGIN:
        return LanguageGuess(DEFAULT, summary)
    if best_score - ranked[1][1] >= MARGIN or best in SUPPORTED:
        return LanguageGuess(best, summary)  # a supported language tied with a neighbour still wins
    return LanguageGuess(DEFAULT, summary)


# ----------------------------------------------------------------- answers in the customer's language

# The customer-facing sentences tierline writes itself for the common outcomes, in each supported
# language but English (English keeps each tier's own, more detailed wording). ``{amount}`` is a money
# amount as tierline prints it ("$49.00"); a template whose amount is unknown drops its " ({amount})".
ANSWERS: dict[str, dict[str, str]] = {
    "invoice_sent": {
        "es": "Le hemos enviado la factura por correo electrónico; también está en su portal de facturación.",
        "de": "Wir haben Ihnen die Rechnung per E-Mail geschickt; Sie finden sie auch in Ihrem Kundenportal.",
        "fr": "Nous vous avons envoyé la facture par e-mail ; elle est aussi dans votre espace de "
        "facturation.",
        "pt": "Enviamos a fatura para o seu e-mail; ela também está no seu portal de cobrança.",
    },
    "card_link_sent": {
        "es": "Le hemos enviado un enlace seguro para actualizar su tarjeta; en cuanto la guarde, "
        "volveremos a intentar el pago.",
        "de": "Wir haben Ihnen einen sicheren Link geschickt, um Ihre Karte zu aktualisieren; sobald die "
        "neue Karte gespeichert ist, versuchen wir die Zahlung erneut.",
        "fr": "Nous vous avons envoyé un lien sécurisé pour mettre à jour votre carte ; dès qu'elle sera "
        "enregistrée, nous relancerons le paiement.",
        "pt": "Enviamos um link seguro para atualizar o seu cartão; assim que ele for salvo, tentaremos o "
        "pagamento novamente.",
    },
    "payment_retried": {
        "es": "Hemos vuelto a intentar el pago pendiente ({amount}) y se ha completado. ¡Gracias!",
        "de": "Wir haben die offene Zahlung ({amount}) erneut eingezogen, und sie ist durchgegangen. "
        "Vielen Dank!",
        "fr": "Nous avons relancé le paiement en attente ({amount}) et il est passé. Merci !",
        "pt": "Tentamos novamente o pagamento em aberto ({amount}) e ele foi aprovado. Obrigado!",
    },
    "refund_done": {
        "es": "Le hemos reembolsado {amount}; suele aparecer en su extracto en 5 a 10 días hábiles.",
        "de": "Wir haben Ihnen {amount} erstattet; der Betrag erscheint meist innerhalb von 5 bis 10 "
        "Werktagen auf Ihrem Kontoauszug.",
        "fr": "Nous vous avons remboursé {amount} ; le remboursement apparaît en général sur votre relevé "
        "sous 5 à 10 jours ouvrés.",
        "pt": "Reembolsamos {amount}; normalmente o valor aparece no seu extrato em 5 a 10 dias úteis.",
    },
    "invoice_link_sent": {
        "es": "El enlace de pago anterior había caducado. Le hemos enviado un enlace nuevo para pagar la "
        "factura.",
        "de": "Der alte Zahlungslink war abgelaufen. Wir haben Ihnen einen neuen Link zum Bezahlen der "
        "Rechnung geschickt.",
        "fr": "L'ancien lien de paiement avait expiré. Nous vous avons envoyé un nouveau lien pour régler "
        "la facture.",
        "pt": "O link de pagamento anterior tinha expirado. Enviamos um novo link para pagar a fatura.",
    },
    "subscription_cancelled": {
        "es": "Su suscripción está cancelada y no se renovará; mantiene el acceso hasta el final del periodo "
        "pagado.",
        "de": "Ihr Abonnement ist gekündigt und verlängert sich nicht; Sie behalten den Zugang bis zum Ende "
        "des bezahlten Zeitraums.",
        "fr": "Votre abonnement est résilié et ne sera pas renouvelé ; vous gardez l'accès jusqu'à la fin de "
        "la période payée.",
        "pt": "Sua assinatura foi cancelada e não será renovada; você mantém o acesso até o fim do período "
        "pago.",
    },
    "billing_details_updated": {
        "es": "Hemos actualizado sus datos de facturación; aparecerán en su próxima factura.",
        "de": "Ihre Rechnungsdaten wurden aktualisiert; sie erscheinen auf Ihrer nächsten Rechnung.",
        "fr": "Vos informations de facturation ont été mises à jour ; elles figureront sur votre prochaine "
        "facture.",
        "pt": "Seus dados de cobrança foram atualizados; eles aparecerão na sua próxima fatura.",
    },
    "escalated": {
        "es": "He pasado su consulta a una persona de nuestro equipo de facturación, con los datos de su "
        "cuenta; le responderá aquí.",
        "de": "Ich habe Ihr Anliegen mit den Angaben zu Ihrem Konto an eine Person aus unserem "
        "Abrechnungsteam weitergegeben; sie antwortet Ihnen hier.",
        "fr": "J'ai transmis votre demande à une personne de notre équipe facturation, avec les informations "
        "de votre compte ; elle vous répondra ici.",
        "pt": "Encaminhei sua solicitação para uma pessoa da nossa equipe de cobrança, com os dados da sua "
        "conta; ela responderá aqui.",
    },
}


def localized_answer(key: str, language: str | None, *, amount: str | None = None) -> str | None:
    """The ``key`` sentence in ``language``; ``None`` for English, an unsupported language or an
    unknown key (the caller keeps its English text)."""
    template = ANSWERS.get(key, {}).get(language or "")
    if template is None:
        return None
    if amount:
        return template.replace("{amount}", amount)
    if "{amount}" in template and " ({amount})" not in template:
        return None  # the amount is the point of the sentence: keep the caller's text
    return template.replace(" ({amount})", "")
