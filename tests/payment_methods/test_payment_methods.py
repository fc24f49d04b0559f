"""Saved cards and the company profile against localstripe: Stripe and the local mirror always agree."""

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.company import service as company
from billing.errors import NotFound
from billing.payment_methods import service as payment_methods
from billing.stripe_gateway import StripeGateway
from models import Account, AutoRechargeSettings, Company, PaymentMethod
from tests.support.factories import SYSTEM, create_account, sessions_of
from tests.support.payments_helpers import ready_account
from tests.support.stripe_server import LocalStripe
from tests.support.usage_factories import enable_auto_recharge


async def attach(
    session: AsyncSession, gateway: StripeGateway, account: Account, stripe_id: str
) -> PaymentMethod:
    assert account.id is not None
    attached = await payment_methods.attach(sessions_of(session), SYSTEM, gateway, account.id, stripe_id)
    method = await session.get(PaymentMethod, attached.id)
    assert method is not None
    return method


async def stripe_default(localstripe: LocalStripe, customer_id: str | None) -> str | None:
    customer = await localstripe.retrieve(f"/v1/customers/{customer_id}")
    return customer["invoice_settings"]["default_payment_method"]  # type: ignore[no-any-return]


async def test_the_first_card_is_the_default_here_and_in_stripe_until_another_is_chosen(
    session: AsyncSession, stripe_gateway: StripeGateway, localstripe: LocalStripe
) -> None:
    account, first = await ready_account(session, stripe_gateway, localstripe)
    second = await attach(session, stripe_gateway, account, await localstripe.card())
    assert first.is_default and not second.is_default
    assert await stripe_default(localstripe, account.stripe_customer_id) == first.stripe_payment_method_id

    assert second.id is not None
    assert account.id is not None
    await payment_methods.set_default(sessions_of(session), SYSTEM, stripe_gateway, account.id, second.id)
    await session.refresh(first)
    await session.refresh(second)
    assert second.is_default and not first.is_default
    assert await stripe_default(localstripe, account.stripe_customer_id) == second.stripe_payment_method_id


async def test_a_card_of_another_customer_is_refused(
    session: AsyncSession, stripe_gateway: StripeGateway, localstripe: LocalStripe
) -> None:
    _, theirs = await ready_account(session, stripe_gateway, localstripe)
    mine = await create_account(session)
    # Exactly what an unknown card gets (tests/payment_methods/test_payment_methods_oracle.py): no existence oracle.
    with pytest.raises(NotFound, match=payment_methods.NOT_FOUND):
        await attach(session, stripe_gateway, mine, theirs.stripe_payment_method_id)


async def test_the_auto_recharge_card_is_deleted_only_with_a_replacement(
    session: AsyncSession, stripe_gateway: StripeGateway, localstripe: LocalStripe
) -> None:
    account, used = await ready_account(session, stripe_gateway, localstripe)
    other = await attach(session, stripe_gateway, account, await localstripe.card())
    await enable_auto_recharge(session, account, used)
    assert account.id is not None and used.id is not None and other.id is not None

    with pytest.raises(payment_methods.PaymentMethodInUse):
        await payment_methods.delete(sessions_of(session), SYSTEM, stripe_gateway, account.id, used.id)
    assert (await localstripe.retrieve(f"/v1/payment_methods/{used.stripe_payment_method_id}"))["customer"]

    await payment_methods.delete(
        sessions_of(session), SYSTEM, stripe_gateway, account.id, used.id, replacement_id=other.id
    )
    session.expunge_all()
    assert await session.get(PaymentMethod, used.id) is None
    assert (await localstripe.retrieve(f"/v1/payment_methods/{used.stripe_payment_method_id}"))[
        "customer"
    ] is None
    settings = await session.get(AutoRechargeSettings, account.id)
    assert settings is not None and settings.payment_method_id == other.id
    replacement = await session.get(PaymentMethod, other.id)
    assert replacement is not None and replacement.is_default


async def test_company_input_is_validated_whole_and_saved_only_when_valid(
    session: AsyncSession, stripe_gateway: StripeGateway, localstripe: LocalStripe
) -> None:
    account = await create_account(session)
    assert account.id is not None
    await session.commit()  # visible to the service's own sessions
    bad = company.CompanyInput(
        legal_name="  ",
        registration_number="HRB 1",
        phone="12",
        address_line1="Unter den Linden 1",
        city="Berlin",
        postal_code="x" * 50,
        country="Germany",
    )
    with pytest.raises(company.InvalidCompanyInput) as rejected:
        await company.save_company(sessions_of(session), SYSTEM, stripe_gateway, account.id, bad)
    assert sorted(field for field, _ in rejected.value.field_errors) == [
        "country",
        "legal_name",
        "phone",
        "postal_code",
    ]
    assert await session.get(Company, account.id) is None and account.stripe_customer_id is None

    good = company.CompanyInput(
        legal_name=" Acme GmbH ",
        registration_number="HRB 1",
        phone="030 1234567",
        address_line1="Unter den Linden 1",
        city="Berlin",
        postal_code="10117",
        country="de",
    )
    saved = await company.save_company(sessions_of(session), SYSTEM, stripe_gateway, account.id, good)
    await session.refresh(account)
    assert (saved.legal_name, saved.phone, saved.country) == ("Acme GmbH", "+49301234567", "DE")
    customer = await localstripe.retrieve(f"/v1/customers/{account.stripe_customer_id}")
    assert customer["name"] == "Acme GmbH" and customer["phone"] == "+49301234567"
    assert customer["address"]["city"] == "Berlin"
