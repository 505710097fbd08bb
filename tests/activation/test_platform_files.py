"""Upload files and request bodies: headers as the platforms document them, hashed and clear
columns, the minimum audience size, removals, batching and streaming.

Digests are literals: the SHA-256 of the documented normalized strings, computed once with
coreutils' sha256sum (see test_platform_hashing.py for the rules behind each)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from collections.abc import Iterator

import pytest

from activation.platforms import (
    DEFAULT_MIN_AUDIENCE_SIZE,
    AudienceTooSmall,
    Contact,
    ExportFieldsInvalid,
    check_min_audience_size,
    google_user_data_operations,
    meta_users_requests,
    write_csv_export,
    write_google_customer_match_csv,
    write_google_customer_match_removal_csv,
    write_jsonl_export,
    write_meta_customer_list_csv,
    write_meta_payload_json,
)
from tests.activation.digests import (
    SHA_94025,
    SHA_CA,
    SHA_DOE,
    SHA_GOOGLE_PHONE,
    SHA_JOHN,
    SHA_JOHN_DOE_EMAIL,
    SHA_M,
    SHA_MENLOPARK,
    SHA_META_PHONE,
    SHA_US,
    read_csv,
)

SHA_19970216 = "01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c"
SHA_1997 = "0985b889a1fe4f4e1fb925061ac6fb2247f10875f5fcbe63eec2ab55ed68970e"
SHA_02 = "a953f09a1b6b6725b81956e9ad0b1eb49e3ad40004c04307ef8af6246a054116"
SHA_16 = "b17ef6d19c7a5b1ee83b907c595526dcb1eb06db8227d650d5dda0a9f4ce8cd9"
SHA_GMAIL_CANONICAL = "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4"

# The oracle input from the reference notes (facebook-business' format_params, run offline):
# " John.Doe@Example.COM ", "+1 (650) 555-1212", "John", "Doe", "US", "94025-1234", "CA", "m".
JOHN = Contact(
    emails=(" John.Doe@Example.COM ",),
    phones=("+1 (650) 555-1212",),
    first_name="John",
    last_name="Doe",
    city="Menlo Park",
    state="CA",
    postal_code="94025-1234",
    country="US",
    date_of_birth=dt.date(1997, 2, 16),
    gender="m",
)


def people(count: int, contact: Contact = JOHN) -> list[Contact]:
    return [contact] * count


# --- minimum audience size ----------------------------------------------------------------------


def test_check_min_audience_size_default_is_100():
    assert DEFAULT_MIN_AUDIENCE_SIZE == 100
    check_min_audience_size(100)
    with pytest.raises(AudienceTooSmall) as info:
        check_min_audience_size(99)
    assert info.value.code == "audience_too_small"
    assert info.value.extra == {"count": 99, "minimum": 100}
    assert "99" in info.value.message and "100" in info.value.message


def test_check_min_audience_size_configurable_and_validated():
    check_min_audience_size(3, 3)
    with pytest.raises(AudienceTooSmall):
        check_min_audience_size(0, 1)
    with pytest.raises(ValueError, match="negative"):
        check_min_audience_size(5, -1)


# --- Google Customer Match CSV ------------------------------------------------------------------


def test_google_csv_headers_hashed_and_clear_columns():
    # given three people with every Google key
    out = io.StringIO(newline="")
    # when the Customer Match file is written
    stats = write_google_customer_match_csv(people(3), out, min_audience_size=3)
    # then the English headers, hashed email/phone/names and clear country/zip
    rows = read_csv(out.getvalue())
    assert rows[0] == ["Email", "Phone", "First Name", "Last Name", "Country", "Zip"]
    assert rows[1] == [
        SHA_JOHN_DOE_EMAIL,
        SHA_GOOGLE_PHONE,
        SHA_JOHN,
        SHA_DOE,
        "US",
        "94025-1234",
    ]
    assert len(rows) == 4
    assert (stats.rows, stats.skipped) == (3, 0)


def test_google_csv_reads_back_with_dictreader():
    out = io.StringIO(newline="")
    write_google_customer_match_csv(people(2), out, min_audience_size=2)
    records = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert set(records[0]) == {"Email", "Phone", "First Name", "Last Name", "Country", "Zip"}
    assert records[0]["Country"] == "US"


def test_google_csv_repeats_email_and_phone_columns_and_canonicalizes_gmail():
    contact = Contact(
        emails=("Cloudy.SanFrancisco+shopping@gmail.com", "cloudysanfrancisco@gmail.com", "x"),
        phones=("(650) 555-1212",),
        country="US",
    )
    out = io.StringIO(newline="")
    stats = write_google_customer_match_csv(
        [contact], out, min_audience_size=1, email_columns=2, phone_columns=2
    )
    rows = read_csv(out.getvalue())
    assert rows[0] == [
        "Email",
        "Email",
        "Phone",
        "Phone",
        "First Name",
        "Last Name",
        "Country",
        "Zip",
    ]
    # both spellings are one Gmail address once canonicalized: one column filled, not two
    assert rows[1] == [SHA_GMAIL_CANONICAL, "", SHA_GOOGLE_PHONE, "", "", "", "", ""]
    assert stats.dropped["email"] == 1  # "x"


def test_google_csv_leaves_out_an_incomplete_mailing_address():
    # Google matches an address on First Name + Last Name + Country + Zip together only
    contact = Contact(emails=("john.doe@example.com",), first_name="John", country="US")
    out = io.StringIO(newline="")
    stats = write_google_customer_match_csv([contact], out, min_audience_size=1)
    assert read_csv(out.getvalue())[1] == [SHA_JOHN_DOE_EMAIL, "", "", "", "", ""]
    assert stats.dropped["address_incomplete"] == 1


def test_google_csv_skips_contacts_without_any_match_key():
    out = io.StringIO(newline="")
    stats = write_google_customer_match_csv(
        [Contact(city="Paris"), Contact(emails=("nope",)), JOHN], out, min_audience_size=1
    )
    assert (stats.rows, stats.skipped) == (1, 2)
    assert len(read_csv(out.getvalue())) == 2


def test_google_csv_below_minimum_raises_and_writes_nothing():
    out = io.StringIO(newline="")
    with pytest.raises(AudienceTooSmall) as info:
        write_google_customer_match_csv(people(4), out, min_audience_size=5)
    assert info.value.count == 4
    assert out.getvalue() == ""  # not even the header


def test_google_csv_minimum_counts_exportable_people_not_input_rows():
    out = io.StringIO(newline="")
    with pytest.raises(AudienceTooSmall):
        write_google_customer_match_csv(
            [JOHN, JOHN, Contact(city="Nowhere")], out, min_audience_size=3
        )


def test_google_removal_csv_has_no_minimum():
    out = io.StringIO(newline="")
    stats = write_google_customer_match_removal_csv([JOHN], out)
    assert stats.rows == 1
    assert read_csv(out.getvalue())[1][0] == SHA_JOHN_DOE_EMAIL


def test_google_api_operations_one_identifier_each():
    operations = list(google_user_data_operations(people(2), min_audience_size=2))
    assert operations[0] == {
        "create": {
            "userIdentifiers": [
                {"hashedEmail": SHA_JOHN_DOE_EMAIL},
                {"hashedPhoneNumber": SHA_GOOGLE_PHONE},
                {
                    "addressInfo": {
                        "hashedFirstName": SHA_JOHN,
                        "hashedLastName": SHA_DOE,
                        "countryCode": "US",
                        "postalCode": "94025-1234",
                    }
                },
            ]
        }
    }
    assert all(len(identifier) == 1 for identifier in operations[0]["create"]["userIdentifiers"])


def test_google_api_removal_of_one_person_is_not_gated():
    operations = list(google_user_data_operations([JOHN], remove=True))
    assert list(operations[0]) == ["remove"]


def test_google_api_additions_below_minimum_yield_nothing():
    generator = google_user_data_operations(people(2), min_audience_size=3)
    with pytest.raises(AudienceTooSmall):
        next(generator)


# --- Meta Custom Audiences ----------------------------------------------------------------------

META_ROW = [
    SHA_JOHN_DOE_EMAIL,
    SHA_META_PHONE,
    SHA_JOHN,
    SHA_DOE,
    SHA_MENLOPARK,
    SHA_CA,
    SHA_94025,
    SHA_US,
    SHA_1997,
    SHA_02,
    SHA_16,
    SHA_M,
]


def test_meta_payload_json_shape_and_hashes():
    out = io.StringIO()
    stats = write_meta_payload_json(people(2), out, min_audience_size=2)
    document = json.loads(out.getvalue())
    assert document == {
        "payload": {
            "schema": [
                "EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY",
                "DOBY", "DOBM", "DOBD", "GEN",
            ],
            "data": [META_ROW, META_ROW],
        }
    }  # fmt: skip
    assert stats.rows == 2


def test_meta_payload_missing_keys_are_empty_strings_never_hashed():
    contact = Contact(emails=("John.Doe@Example.COM",))
    out = io.StringIO()
    write_meta_payload_json([contact], out, schema=["EMAIL", "PHONE", "FN"], min_audience_size=1)
    data = json.loads(out.getvalue())["payload"]["data"]
    # (sha256("") would be e3b0c442…: it must never appear)
    assert data == [[SHA_JOHN_DOE_EMAIL, "", ""]]


def test_meta_payload_extern_id_and_madid_are_sent_unhashed_only_when_asked():
    contact = Contact(
        external_id="crm-000123", mobile_advertiser_id="AECE52E7-03EE-455A-B3C4-E57283966239"
    )
    out = io.StringIO()
    write_meta_payload_json(
        [contact], out, schema=["EXTERN_ID", "MADID", "EMAIL"], min_audience_size=1
    )
    assert json.loads(out.getvalue())["payload"]["data"] == [
        ["crm-000123", "aece52e7-03ee-455a-b3c4-e57283966239", ""]
    ]
    # the default schema leaves both out
    out = io.StringIO()
    stats = write_meta_payload_json([contact], out, min_audience_size=0)
    assert json.loads(out.getvalue())["payload"]["data"] == []
    assert stats.skipped == 1


@pytest.mark.parametrize("schema", [[], ["EMAIL", "EMAIL"], ["EMAIL", "SSN"]])
def test_meta_schema_is_validated(schema):
    with pytest.raises(ExportFieldsInvalid):
        write_meta_payload_json([JOHN], io.StringIO(), schema=schema, min_audience_size=0)


def test_meta_payload_below_minimum_writes_nothing():
    out = io.StringIO()
    with pytest.raises(AudienceTooSmall):
        write_meta_payload_json(people(99), out)
    assert out.getvalue() == ""


def test_meta_requests_batch_with_upload_session():
    # given 25 people and batches of 10
    requests = list(
        meta_users_requests(
            people(25),
            audience_id="23850000000000001",
            batch_size=10,
            min_audience_size=10,
            session_id=777,
            estimated_total=25,
        )
    )
    # then three POSTs of 10, 10 and 5 rows, numbered, the last one flagged
    assert [r.method for r in requests] == ["POST", "POST", "POST"]
    assert {r.path for r in requests} == {"/23850000000000001/users"}
    assert [r.row_count for r in requests] == [10, 10, 5]
    assert [r.body["session"] for r in requests] == [
        {"session_id": 777, "batch_seq": 1, "last_batch_flag": False, "estimated_num_total": 25},
        {"session_id": 777, "batch_seq": 2, "last_batch_flag": False, "estimated_num_total": 25},
        {"session_id": 777, "batch_seq": 3, "last_batch_flag": True, "estimated_num_total": 25},
    ]
    assert requests[0].body["payload"]["data"][0] == META_ROW


def test_meta_requests_exact_multiple_of_batch_size_flags_the_last_batch():
    requests = list(
        meta_users_requests(
            people(20), audience_id="1", batch_size=10, min_audience_size=1, session_id=1
        )
    )
    assert [r.body["session"]["last_batch_flag"] for r in requests] == [False, True]


def test_meta_removal_is_a_delete_with_the_same_payload_shape_and_no_minimum():
    requests = list(meta_users_requests([JOHN], audience_id="42", remove=True))
    assert len(requests) == 1
    assert requests[0].method == "DELETE"
    assert requests[0].path == "/42/users"
    assert requests[0].body == {"payload": {"schema": list(requests[0].body["payload"]["schema"]),
                                            "data": [META_ROW]}}  # fmt: skip


def test_meta_requests_below_minimum_send_nothing():
    generator = meta_users_requests(people(5), audience_id="42", min_audience_size=6)
    with pytest.raises(AudienceTooSmall):
        next(generator)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 10_001},
        {"batch_size": 0},
        {"batch_size": 10, "min_audience_size": 11},
        {"audience_id": "../act_1"},
    ],
)
def test_meta_requests_arguments_are_validated(kwargs):
    arguments = {"audience_id": "42", "min_audience_size": 1, **kwargs}
    with pytest.raises(ValueError):
        next(meta_users_requests([JOHN], **arguments))


def test_meta_requests_stream_with_bounded_lookahead():
    # given a source that counts how far it has been read
    pulled = 0

    def source() -> Iterator[Contact]:
        nonlocal pulled
        for _ in range(100_000):
            pulled += 1
            yield JOHN

    # when the first request is taken
    requests = meta_users_requests(source(), audience_id="42", batch_size=100, min_audience_size=1)
    first = next(requests)
    # then only about two batches were read, not the whole audience
    assert first.row_count == 100
    assert pulled <= 201


def test_meta_customer_list_csv_documented_headers_all_hashed():
    out = io.StringIO(newline="")
    write_meta_customer_list_csv(people(2), out, min_audience_size=2)
    rows = read_csv(out.getvalue())
    assert rows[0] == [
        "email", "phone", "fn", "ln", "ct", "st", "zip", "country", "dob", "doby", "gen",
    ]  # fmt: skip
    assert rows[1] == [
        SHA_JOHN_DOE_EMAIL, SHA_META_PHONE, SHA_JOHN, SHA_DOE, SHA_MENLOPARK, SHA_CA,
        SHA_94025, SHA_US, SHA_19970216, SHA_1997, SHA_M,
    ]  # fmt: skip


def test_meta_customer_list_csv_up_to_three_email_columns():
    contact = Contact(emails=("a@example.com", "b@example.com"), country="US")
    out = io.StringIO(newline="")
    write_meta_customer_list_csv([contact], out, min_audience_size=1, email_columns=3)
    rows = read_csv(out.getvalue())
    assert rows[0][:4] == ["email", "email", "email", "phone"]
    assert rows[1][2] == ""
    with pytest.raises(ValueError):
        write_meta_customer_list_csv([contact], io.StringIO(), email_columns=4)


# --- plain CSV / JSONL ---------------------------------------------------------------------------


def test_csv_export_only_chosen_fields_in_order():
    rows: list[dict[str, object]] = [
        {
            "user_id": "u1",
            "plan": "gold",
            "ltv": 12.5,
            "secret": "hidden-value",
            "joined": dt.date(2026, 1, 2),
        },
        {"user_id": "u2", "plan": None, "vip": True},
    ]
    out = io.StringIO(newline="")
    stats = write_csv_export(iter(rows), out, fields=["user_id", "plan", "ltv", "joined", "vip"])
    assert out.getvalue() == (
        "user_id,plan,ltv,joined,vip\r\nu1,gold,12.5,2026-01-02,\r\nu2,,,,true\r\n"
    )
    assert "hidden-value" not in out.getvalue()
    assert stats.rows == 2


def test_csv_export_neutralizes_formulas_but_not_numbers():
    rows = [{"a": '=HYPERLINK("http://evil")', "b": "+44 20 7183 8750", "c": "-3.5", "d": "@x"}]
    out = io.StringIO(newline="")
    write_csv_export(rows, out, fields=["a", "b", "c", "d"])
    assert read_csv(out.getvalue())[1] == [
        "'=HYPERLINK(\"http://evil\")", "+44 20 7183 8750", "-3.5", "'@x",
    ]  # fmt: skip


def test_jsonl_export_one_object_per_line_with_nulls():
    rows: list[dict[str, object]] = [
        {"user_id": "u1", "tags": ["a", "b"], "other": 1},
        {"user_id": "u2"},
    ]
    out = io.StringIO()
    write_jsonl_export(rows, out, fields=["user_id", "tags"])
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"user_id": "u1", "tags": ["a", "b"]},
        {"user_id": "u2", "tags": None},
    ]


@pytest.mark.parametrize("fields", [[], ["a", "a"], ["a", ""]])
def test_export_fields_are_validated(fields):
    with pytest.raises(ExportFieldsInvalid):
        write_csv_export([], io.StringIO(), fields=fields)
    with pytest.raises(ExportFieldsInvalid):
        write_jsonl_export([], io.StringIO(), fields=fields)


# --- personal data never printed or logged -------------------------------------------------------


def test_contact_and_request_reprs_and_errors_carry_no_personal_data(caplog):
    caplog.set_level(logging.DEBUG)
    sentinel = "sentinel.person@example.com"
    contact = Contact(emails=(sentinel,), first_name="Sentinelname", phones=("+16505551212",))
    assert sentinel not in repr(contact)
    assert "Sentinelname" not in repr(contact)
    request = next(meta_users_requests([contact], audience_id="42", min_audience_size=1))
    assert "sentinel" not in repr(request)
    with pytest.raises(AudienceTooSmall) as info:
        write_google_customer_match_csv([contact], io.StringIO(), min_audience_size=2)
    assert sentinel not in str(info.value)
    write_meta_customer_list_csv([contact], io.StringIO(), min_audience_size=1)
    assert sentinel not in caplog.text
    assert "Sentinelname" not in caplog.text


def test_contact_from_mapping_accepts_trait_names():
    contact = Contact.from_mapping(
        {
            "email": "a@example.com",
            "emails": ["b@example.com"],
            "phone": "+16505551212",
            "firstName": "Ann",
            "lastName": "Lee",
            "zip": "94025",
            "country": "US",
            "birthday": "1990-01-02",
            "madid": "AECE52E7-03EE-455A-B3C4-E57283966239",
        }
    )
    assert contact.emails == ("b@example.com", "a@example.com")
    assert contact.phones == ("+16505551212",)
    assert (contact.first_name, contact.last_name) == ("Ann", "Lee")
    assert (contact.postal_code, contact.country, contact.date_of_birth) == (
        "94025",
        "US",
        "1990-01-02",
    )
    assert contact.mobile_advertiser_id == "AECE52E7-03EE-455A-B3C4-E57283966239"
