"""The email as written to bytes (notifications/adapters/mime.py), read back by python's email package as the SMTP
sink and every mail client would: headers (non-ASCII names and subjects included), both bodies, line lengths."""

from datetime import datetime, timezone
from email import policy
from email.parser import BytesParser

import pytest
from notifications.adapters.smtp import UnsendableMail, build_email, is_permanent
from notifications.smtp_sink import MailStore

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 2, 10, 30, 5, tzinfo=timezone.utc)
NID = "0b7f6c1e-1111-4222-8333-444455556666"


def row(subject="Offer received: Brand identity", text="Hello Ann,\nYou have an offer.\n",
        html: str | None = "<p>Hello Ann,</p>\n") -> dict:
    return {"notification_id": NID, "kind": "offer_received", "subject": subject, "body_text": text, "body_html": html}


def read(mail):
    return BytesParser(policy=policy.default).parsebytes(mail.data)


def test_an_ascii_mail_reads_back_with_every_header_and_both_bodies():
    mail = build_email(row(), {"name": "Ann Lee", "email": "ann@example.test"}, "Platform <n@example.test>", NOW)
    message = read(mail)
    assert message["Message-ID"] == f"<{NID}@notifications.escrow-platform>"
    assert message["Date"].datetime == NOW
    assert message["From"] == "Platform <n@example.test>"
    assert message["To"] == "Ann Lee <ann@example.test>"
    assert message["Subject"] == "Offer received: Brand identity"
    assert message["X-Notification-Id"] == NID
    assert message["X-Notification-Kind"] == "offer_received"
    assert message.get_content_type() == "multipart/alternative"
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == "Hello Ann,\nYou have an offer.\n"
    assert message.get_body(("html",)).get_content().replace("\r\n", "\n") == "<p>Hello Ann,</p>\n"
    assert (mail.sender, mail.recipients) == ("n@example.test", ["ann@example.test"])
    assert mail.data.isascii() and b"\n" not in mail.data.replace(b"\r\n", b"")  # CRLF line ends only


@pytest.mark.parametrize("name, subject", [
    ("Zoë Ñúñez-Øster", "Offre reçue : « Identité visuelle » — 1 500,00 €"),
    ("山田 太郎", "新しいオファー: ブランド・アイデンティティ、マイルストーン 1 から 3 まで" * 3),
    ('Ann "the client", Lee', "A subject long enough to be folded over more than one line of at most seventy-eight "
                              "characters, as RFC 5322 asks"),
    ("Mallory", "=?utf-8?b?bm90IGFuIGVuY29kZWQgd29yZA==?= stays as written"),
    ("Émile 👩‍💻", "Emoji 🎉 and combining e\u0301 characters"),
])
def test_names_and_subjects_that_are_not_plain_ascii_read_back_exactly(name, subject):
    mail = build_email(row(subject=subject, text=f"Bonjour {name},\nÇa va ? 💶\n", html=f"<p>{name}</p>\n"),
                       {"name": name, "email": "zoe@example.test"}, "Plateforme Séquestre <n@example.test>", NOW)
    message = read(mail)
    assert message["Subject"] == subject
    assert message["To"].addresses[0].display_name == name
    assert message["To"].addresses[0].addr_spec == "zoe@example.test"
    assert message["From"].addresses[0].display_name == "Plateforme Séquestre"
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == f"Bonjour {name},\nÇa va ? 💶\n"
    assert message.get_body(("html",)).get_content().replace("\r\n", "\n") == f"<p>{name}</p>\n"
    assert mail.data.isascii()  # encoded words and quoted-printable: no 8-bit transport needed
    # Within 78 characters a line (the Message-ID, one token of 80, cannot be folded), within 998 all
    assert max(len(line) for line in mail.data.split(b"\r\n") if not line.startswith(b"Message-ID:")) <= 78


def test_a_text_only_mail_is_a_single_part_and_a_body_with_the_separator_or_long_lines_is_encoded():
    single = read(build_email(row(html=None), {"name": "Ann", "email": "ann@example.test"}, "n@example.test", NOW))
    assert single.get_content_type() == "text/plain"
    assert single.get_content().replace("\r\n", "\n") == "Hello Ann,\nYou have an offer.\n"
    tricky = f"--=_{NID}\n.a line starting with a dot\n{'x' * 2000}\n"
    message = read(build_email(row(text=tricky), {"name": "Ann", "email": "ann@example.test"}, "n@example.test", NOW))
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == tricky
    assert message.get_body(("html",)).get_content().replace("\r\n", "\n") == "<p>Hello Ann,</p>\n"


@pytest.mark.parametrize("name, address", [("Ann\r\nBcc: x@example.test", "ann@example.test"),
                                           ("Ann", "ann@example.test>\r\nBcc: x@example.test"),
                                           ("Ann", "not an address")])
def test_a_header_that_would_break_the_mail_is_refused_for_good(name, address):
    with pytest.raises(UnsendableMail) as refused:
        build_email(row(), {"name": name, "email": address}, "n@example.test", NOW)
    assert is_permanent(refused.value)
    with pytest.raises(UnsendableMail):
        build_email(row(subject="Hi\r\nBcc: x@example.test"), {"name": "Ann", "email": "ann@example.test"},
                    "n@example.test", NOW)


def test_the_same_row_gives_the_same_mail():
    recipient = {"name": "Zoë", "email": "zoe@example.test"}
    assert build_email(row(), recipient, "n@example.test", NOW) == build_email(row(), recipient, "n@example.test", NOW)


def test_the_sink_indexes_and_lists_a_non_ascii_mail_as_sent(tmp_path):
    subject = "Paiement libéré : 1 500,00 € — « Identité »"
    mail = build_email(row(subject=subject, text="Zoë, c'est payé.\n", html="<p>Zoë</p>\n"),
                       {"name": "Zoë Ñúñez", "email": "zoe@example.test"}, "Plateforme <n@example.test>", NOW)
    store = MailStore(tmp_path)
    record = store.save(mail.sender, mail.recipients, mail.data)
    assert record["subject"] == subject
    assert record["to"] == "Zoë Ñúñez <zoe@example.test>"
    assert record["message_id"] == f"<{NID}@notifications.escrow-platform>"
    assert (record["kind"], record["notification_id"]) == ("offer_received", NID)
    [listed] = store.messages("zoe@example.test")
    assert (listed["text"], listed["html"]) == ("Zoë, c'est payé.\n", "<p>Zoë</p>\n")


@pytest.mark.parametrize("durable, syncs", [(True, 2), (False, 0)])
def test_the_sink_syncs_a_mail_and_its_index_line_only_when_durable_and_lists_it_either_way(
        tmp_path, monkeypatch, durable, syncs):
    import os

    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    mail = build_email(row(), {"name": "Zoë", "email": "zoe@example.test"}, "n@example.test", NOW)
    store = MailStore(tmp_path, durable=durable)
    store.save(mail.sender, mail.recipients, mail.data)
    assert len(synced) == syncs
    [listed] = store.messages("zoe@example.test")
    assert listed["notification_id"] == NID


# (name, subject, whether its headers are plain: ASCII with nothing to decode)
NAMES_AND_SUBJECTS = [
    ("Ann Lee", "Offer received: Brand identity", True),
    ("client client-37499cef07c4", "New offer from client client-37499cef07c4: Brand identity", True),
    ("Ann Lee", "A subject long enough to be folded over more than one line of at most seventy-eight characters, "
                "as RFC 5322 asks, and then some more", True),
    ("O'Brien & Sons", "Payment released: 1,500.00 USD; milestone 2/3 <done>", True),
    ('Ann "the client", Lee', "Quoted, commented (like this) and escaped \\ parts", False),
    ("Zoë Ñúñez-Øster", "Offre reçue : « Identité visuelle » — 1 500,00 €", False),
    ("山田 太郎", "新しいオファー: ブランド・アイデンティティ", False),
    ("Mallory", "=?utf-8?b?bm90IGFuIGVuY29kZWQgd29yZA==?= stays as written", False),
]


@pytest.mark.parametrize("name, subject, plain", NAMES_AND_SUBJECTS)
def test_the_sink_reads_a_mails_index_headers_as_the_email_packages_full_parse_does(name, subject, plain, monkeypatch):
    from notifications.smtp_sink import store

    mail = build_email(row(subject=subject), {"name": name, "email": "ann@example.test"}, "n@example.test", NOW)
    full = read(mail)
    assert store._headers(mail.data) == {field: store._header(full, header) for field, header in store.INDEXED.items()}
    assert store._headers(mail.data)["subject"] == " ".join(subject.split())
    # Plain headers are read without the full parse, which costs 8 times more.
    full_parses = []
    monkeypatch.setattr(store, "BytesParser", lambda **kw: full_parses.append(kw) or BytesParser(**kw))
    store._headers(mail.data)
    assert bool(full_parses) == (not plain)


def test_the_sink_keeps_mails_in_one_spool_and_lists_each_with_its_bodies_in_arrival_order(tmp_path):
    mails = [build_email(row(subject=subject, text=f"Hello {name},\n", html=f"<p>{name}</p>\n"),
                         {"name": name, "email": f"p{i}@example.test"}, "n@example.test", NOW)
             for i, (name, subject, _) in enumerate(NAMES_AND_SUBJECTS)]
    store = MailStore(tmp_path, durable=False)
    for mail in mails:
        store.save(mail.sender, mail.recipients, mail.data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.jsonl", "mail.spool"]  # no file per message
    listed = store.messages()
    assert [m["rcpt_tos"] for m in listed] == [mail.recipients for mail in mails]
    assert [(m["text"], m["html"]) for m in listed] == [(f"Hello {n},\n", f"<p>{n}</p>\n") for n, _, _ in NAMES_AND_SUBJECTS]
    assert [m["subject"] for m in store.messages("p5@example.test")] == [NAMES_AND_SUBJECTS[5][1]]


def test_durable_saves_from_worker_threads_each_keep_their_own_bytes(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    mails = [build_email(row(text=f"mail {i}\n" * (i + 1)), {"name": "Ann", "email": f"p{i}@example.test"},
                         "n@example.test", NOW) for i in range(40)]
    store = MailStore(tmp_path, durable=True)
    with ThreadPoolExecutor(8) as pool:  # as server.py runs durable saves (asyncio.to_thread)
        list(pool.map(lambda mail: store.save(mail.sender, mail.recipients, mail.data), mails))
    by_address = {m["rcpt_tos"][0]: m["text"] for m in store.messages()}
    assert by_address == {f"p{i}@example.test": f"mail {i}\n" * (i + 1) for i in range(40)}


def test_a_sink_directory_written_with_a_file_per_message_is_still_read(tmp_path):
    import json

    old = build_email(row(text="from before\n"), {"name": "Ann", "email": "old@example.test"}, "n@example.test", NOW)
    (tmp_path / "1-abc.eml").write_bytes(old.data)
    (tmp_path / "index.jsonl").write_text(json.dumps({"file": "1-abc.eml", "rcpt_tos": old.recipients}) + "\n")
    store = MailStore(tmp_path, durable=False)
    new = build_email(row(text="from now\n"), {"name": "Ann", "email": "new@example.test"}, "n@example.test", NOW)
    store.save(new.sender, new.recipients, new.data)
    assert [m["text"] for m in store.messages()] == ["from before\n", "from now\n"]
