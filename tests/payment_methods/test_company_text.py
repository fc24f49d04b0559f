"""A company profile's text fields refuse what would make them print as something else or break their line:
text-direction embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) and control characters. Scripts
written right to left, accents and the left-to-right and right-to-left marks stay allowed. A company in the EU
gives its VAT number (optional) in its member state's format."""

import pytest

from billing.company import service as company

VALID = company.CompanyInput(
    legal_name="Acme GmbH",
    registration_number="HRB 1",
    phone="+49 30 1234567",
    address_line1="Unter den Linden 1",
    city="Berlin",
    postal_code="10117",
    country="DE",
)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("legal_name", "Acme \u202eHbmG"),  # RIGHT-TO-LEFT OVERRIDE: shows as "Acme GmbH"
        ("legal_name", "Acme\u2066 GmbH\u2069"),  # LEFT-TO-RIGHT ISOLATE ... POP DIRECTIONAL ISOLATE
        ("city", "Ber\u202alin"),
        ("address_line1", "Unter den Linden 1\nAttn: accounts"),
        ("registration_number", "HRB\t1"),
        ("vat_id", "DE123\x1b[31m"),
    ],
)
def test_hidden_controls_are_refused(field: str, value: str) -> None:
    with pytest.raises(company.InvalidCompanyInput) as refused:
        company.validate(company.CompanyInput(**(vars(VALID) | {field: value})))
    assert refused.value.field_errors == [
        (field, "must not contain control characters or text-direction overrides")
    ]


@pytest.mark.parametrize(
    "name", ["شركة الشمس", "חברה בע\u05f4מ", "Müller & Söhne \u200eGmbH", "Société Générale"]
)
def test_ordinary_names_in_any_script_are_kept(name: str) -> None:
    assert (
        company.validate(company.CompanyInput(**(vars(VALID) | {"legal_name": name})))["legal_name"] == name
    )


@pytest.mark.parametrize(
    ("country", "given", "kept"),
    [
        ("DE", "DE123456789", "DE123456789"),
        ("DE", "de 123.456.789", "DE123456789"),  # as people write it
        ("DE", "123456789", "DE123456789"),  # the company's country's prefix added
        ("GR", "123456789", "EL123456789"),  # Greece's VAT prefix is EL
        ("AT", "ATU12345678", "ATU12345678"),
        ("NL", "NL123456789B01", "NL123456789B01"),
        ("FR", "FR12345678901", "FR12345678901"),
        ("CH", "CHE-123.456.789 MWST", "CHE-123.456.789 MWST"),  # outside the EU: kept as given
        ("US", "12-3456789", "12-3456789"),
    ],
)
def test_vat_numbers_in_their_format_are_kept_compact(country: str, given: str, kept: str) -> None:
    phone = {
        "GR": "+30 21 0123 4567",
        "AT": "+43 1 234567",
        "NL": "+31 20 123 4567",
        "FR": "+33 1 23 45 67 89",
    }
    data = vars(VALID) | {"country": country, "vat_id": given, "phone": phone.get(country, VALID.phone)}
    assert company.validate(company.CompanyInput(**data))["vat_id"] == kept


@pytest.mark.parametrize(
    "given",
    [
        "hello",
        "DE12345",
        "DE1234567890",
        "CHE-123.456.789",
        "DE\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669",
        "ATU1234",
    ],
)
def test_vat_numbers_of_eu_companies_must_have_their_format(given: str) -> None:
    with pytest.raises(company.InvalidCompanyInput) as refused:
        company.validate(company.CompanyInput(**(vars(VALID) | {"vat_id": given})))
    assert refused.value.field_errors == [
        ("vat_id", "is not an EU VAT number in its country's format, e.g. DE123456789")
    ]
