"""config/privacy.py - sendmail's PrivacyOptions words: which edgemail
knows, what each does here, and why some do nothing.

Owns: PRIVACY_WORDS (the vocabulary config/values.py accepts),
PRIVACY_GOAWAY (the words goaway stands for), PRIVACY_EFFECT and
PRIVACY_NOT_CARRIED (what ``edgemail import`` says of each word).
config/model.py re-exports them.

Never: reads a file or decides a reply (smtpd/ and cli/ do, from Config.PrivacyOptions).
"""

from __future__ import annotations

PRIVACY_WORDS = frozenset("""public needmailhelo needexpnhelo noexpn novrfy needvrfyhelo
    restrictmailq restrictqrun restrictexpand noreceipts nobodyreturn goaway authwarnings
    noetrn noverb noactualrecipient""".split())
#: sendmail's goaway: every flag but noreceipts, restrictmailq, restrictqrun,
#: restrictexpand, noetrn and nobodyreturn (sendmail Installation and Operation Guide)
PRIVACY_GOAWAY = frozenset("""needmailhelo needexpnhelo needvrfyhelo noexpn novrfy noverb authwarnings
    noactualrecipient""".split())
#: what each word does in edgemail (``edgemail import`` says it; goaway is its words,
#: each of which edgemail's SMTP server does always, so the daemon never expands it)
PRIVACY_EFFECT = {
    "public": "the default",
    "needmailhelo": "MAIL before HELO/EHLO is 503 (always so in edgemail)",
    "needexpnhelo": "EXPN tells nothing, with or without HELO (502)",
    "needvrfyhelo": "VRFY tells nothing, with or without HELO (252)",
    "noexpn": "EXPN is 502 5.5.1 (always so)",
    "novrfy": "VRFY is 252 2.5.2, never an answer about a user (always so)",
    "noverb": "VERB is no command of edgemail's (500)",
    "restrictmailq": "mailq lists for root, the edgemail user and group only",
    "restrictqrun": "sendmail -q: root, the edgemail user and group only",
    "noetrn": "ETRN is not offered (502 5.5.1)",
    "noreceipts": "no success reports for NOTIFY=SUCCESS",
    "nobodyreturn": "failure reports carry the original's header only",
    "restrictexpand": "sendmail -bv / -bt show an alias's expansion to root and the edgemail user only",
}
#: why a word does nothing here
PRIVACY_NOT_CARRIED = {
    "authwarnings": "edgemail adds no X-Authentication-Warning: header (its Received: names the local user)",
    "noactualrecipient": "reports name the Final-Recipient as routed (X-Actual-Recipient is not written)",
}
