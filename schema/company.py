"""The company profile shown in "Company details" and required before the first payment."""

from datetime import datetime

import strawberry

from models import Company as CompanyModel

# Domain field names (models.Company) as the client sees them in UpdateCompanyInput.
_COMPANY_FIELD_PATHS = {
    "legal_name": "legalName",
    "registration_number": "registrationNumber",
    "vat_id": "vatId",
    "phone": "phone",
    "address_line1": "address.line1",
    "address_line2": "address.line2",
    "city": "address.city",
    "postal_code": "address.postalCode",
    "region": "address.region",
    "country": "address.country",
}


def company_field_path(name: str) -> str:
    return _COMPANY_FIELD_PATHS.get(name, name)


@strawberry.type
class Address:
    line1: str | None
    line2: str | None
    city: str | None
    postal_code: str | None
    region: str | None
    country: str | None = strawberry.field(description="ISO 3166-1 alpha-2.")


@strawberry.type
class Company:
    legal_name: str | None
    registration_number: str | None
    vat_id: str | None
    phone: str | None = strawberry.field(description="E.164, e.g. '+4930123456'.")
    address: Address
    updated_at: datetime

    @classmethod
    def from_model(cls, row: CompanyModel) -> "Company":
        return cls(
            legal_name=row.legal_name,
            registration_number=row.registration_number,
            vat_id=row.vat_id,
            phone=row.phone,
            address=Address(
                line1=row.address_line1,
                line2=row.address_line2,
                city=row.city,
                postal_code=row.postal_code,
                region=row.region,
                country=row.country,
            ),
            updated_at=row.updated_at,
        )
