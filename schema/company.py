"""The company profile shown in "Company details" and required before the first payment."""

from datetime import datetime
from typing import Annotated

import strawberry

from billing.company import service as company
from billing.company.repository import CompanyRow
from billing.stripe_gateway import PaymentProviderRejected, PaymentProviderUnavailable
from models import Company as CompanyModel
from schema.errors import (
    DeclaredErrors,
    Error,
    PaymentProviderRejectedError,
    PaymentProviderUnavailableError,
    on,
    provider_rejected,
    provider_unavailable,
)

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
    def from_model(cls, row: CompanyModel | CompanyRow) -> "Company":
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


@strawberry.input
class AddressInput:
    line1: str
    line2: str | None = None
    city: str
    postal_code: str
    region: str | None = None
    country: str = strawberry.field(description="ISO 3166-1 alpha-2, e.g. 'DE'.")


@strawberry.input
class UpdateCompanyInput:
    account_id: strawberry.ID | None = strawberry.field(
        default=None, description="Default: the caller's account."
    )
    legal_name: str
    registration_number: str
    vat_id: str | None = strawberry.field(
        default=None,
        description="For a company in the EU, a VAT number in its member state's format, e.g. 'DE123456789'"
        " (spaces, dots and dashes allowed; the country's prefix is added when missing); stored compact.",
    )
    phone: str = strawberry.field(description="Any common format; stored as E.164.")
    address: AddressInput

    def to_domain(self) -> company.CompanyInput:
        return company.CompanyInput(
            legal_name=self.legal_name,
            registration_number=self.registration_number,
            vat_id=self.vat_id,
            phone=self.phone,
            address_line1=self.address.line1,
            address_line2=self.address.line2,
            city=self.address.city,
            postal_code=self.address.postal_code,
            region=self.address.region,
            country=self.address.country,
        )


@strawberry.type
class FieldError:
    field: str = strawberry.field(description="The input path, e.g. 'address.postalCode'.")
    message: str


@strawberry.type
class InvalidCompanyInputError(Error):
    field_errors: list[FieldError]


@strawberry.type
class UpdateCompanySuccess:
    company: Company


UpdateCompanyPayload = Annotated[
    UpdateCompanySuccess
    | InvalidCompanyInputError
    | PaymentProviderUnavailableError
    | PaymentProviderRejectedError,
    strawberry.union("UpdateCompanyPayload"),
]


def invalid_company_input(error: company.InvalidCompanyInput, _country: object) -> InvalidCompanyInputError:
    fields = [FieldError(field=company_field_path(name), message=why) for name, why in error.field_errors]
    return InvalidCompanyInputError(message=error.describe(company_field_path), field_errors=fields)


UPDATE_COMPANY_ERRORS: DeclaredErrors[UpdateCompanyPayload, str] = DeclaredErrors(
    on(company.InvalidCompanyInput, invalid_company_input),
    on(PaymentProviderUnavailable, provider_unavailable),
    on(PaymentProviderRejected, provider_rejected),
)
