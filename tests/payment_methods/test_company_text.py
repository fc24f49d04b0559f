"""A company profile's text fields refuse what would make them print as something else or break their line:
text-direction embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) and control characters. Scripts
written right to left, accents and the left-to-right and right-to-left marks stay allowed."""

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
