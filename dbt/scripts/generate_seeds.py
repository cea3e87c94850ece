"""Generate the raw seed CSVs of the shop_analytics example project.

The data describes Fernhill Outfitters, a made-up online shop for outdoor gear
that sells through a few storefronts (web shops, an app, a marketplace).
Everything is derived from one fixed random seed, so running this script again
rewrites byte-identical files:

    python dbt/scripts/generate_seeds.py              # writes dbt/seeds/raw_*.csv
    python dbt/scripts/generate_seeds.py --check      # fails if the CSVs are stale
    python dbt/scripts/generate_seeds.py --out DIR    # writes (or checks) DIR/raw_*.csv instead

Only the standard library is used. The raw data is deliberately a little
dirty, the way source systems deliver it, so the staging layer has work to do:

* money is stored as integer cents,
* enum-like text comes with mixed casing, stray whitespace and spelling
  variants ("Canceled" vs "cancelled", "Credit Card" vs "credit_card"),
* emails and country codes are not normalised, some values are missing,
* the price history contains same-day corrections (two rows for one day).

Values that CSV readers treat as NULL markers ("NA", "null", "none", "n/a")
are never written as text, so DuckDB and BigQuery load the same rows.

All randomness comes from one `random.Random`, passed down to every function
that draws from it. The data is a function of the order of the draws: drawing
one more or one fewer number, or the same numbers in another order (swapping
two statements, or two arguments of a call), changes every value drawn after
it. Keep the order when editing; `--check` tells whether the output changed.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple, TypeVar

T = TypeVar("T")
Cell = int | str
Row = list[Cell]  # one CSV row, in the column order of HEADERS


class Store(NamedTuple):
    id: int
    name: str
    channel: str  # as the source system spells it
    country: str
    opened_on: date
    weight: float  # share of the orders it takes once open


class Category(NamedTuple):
    spellings: list[str]  # raw spellings of the category
    sku_code: str
    price_range: tuple[int, int]  # launch list price, in cents
    popularity: float
    supplier_ids: list[int]
    names: list[str]


SEED = 20240117
FIRST_ORDER_DAY = date(2024, 1, 1)
LAST_ORDER_DAY = date(2025, 12, 31)
AS_OF = datetime(2025, 12, 31, 23, 59, 59)  # the moment the extract was taken
N_CUSTOMERS = 150
N_ORDERS = 800

SEEDS_DIR = Path(__file__).resolve().parent.parent / "seeds"

# fmt: off
HEADERS = {
    "raw_stores": ["id", "name", "channel", "country", "opened_on"],
    "raw_suppliers": ["id", "name", "country", "lead_time_days"],
    "raw_customers": ["id", "first_name", "last_name", "email", "country", "signup_source", "marketing_opt_in",
                      "created_at", "updated_at"],
    "raw_products": ["id", "sku", "name", "category", "supplier_id", "unit_cost_cents", "status",
                     "created_at", "updated_at"],
    "raw_product_prices": ["id", "product_id", "list_price_cents", "effective_from", "created_at"],
    "raw_orders": ["id", "customer_id", "store_id", "created_at", "status", "promo_code", "shipping_fee_cents"],
    "raw_order_items": ["id", "order_id", "product_id", "quantity", "unit_price_cents"],
    "raw_payments": ["id", "order_id", "payment_method", "status", "amount_cents", "created_at"],
    "raw_shipments": ["id", "order_id", "carrier", "service_level", "shipped_at", "delivered_at", "cost_cents"],
    "raw_returns": ["id", "order_item_id", "quantity", "reason", "refund_cents", "returned_at"],
}

FIRST_NAMES = [
    "Ada", "Bram", "Cleo", "Dario", "Elin", "Femi", "Greta", "Hugo", "Ines", "Jonas",
    "Kaia", "Lars", "Mira", "Nils", "Olive", "Pablo", "Quinn", "Rosa", "Soren", "Tessa",
    "Umar", "Vera", "Wes", "Xenia", "Yara", "Zeno", "Amara", "Bodhi", "Carys", "Dev",
]
LAST_NAMES = [
    "Abbott", "Brennan", "Castillo", "Dufresne", "Eriksen", "Fischer", "Gallo", "Hartley",
    "Ibsen", "Jansen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov",
    "Quintero", "Rasmussen", "Silva", "Thorne", "Uddin", "Vasquez", "Whitfield", "Young",
]
EMAIL_DOMAINS = ["example.com", "example.org", "mail.example.net"]

# (code, weight); None is a customer who never told us their country
COUNTRIES: list[tuple[str | None, float]] = [
    ("US", 44), ("CA", 9), ("GB", 14), ("DE", 15), ("NL", 6), ("FR", 7), (None, 5),
]
SIGNUP_SOURCE_WEIGHTS: list[tuple[str, float]] = [
    ("organic", 35), ("paid_search", 25), ("social", 18), ("referral", 12), ("email", 10),
]
SIGNUP_SOURCES = {
    "organic": ["organic", "Organic"],
    "paid_search": ["paid_search", "Paid Search", "PAID_SEARCH"],
    "social": ["social", "Social"],
    "referral": ["referral", "Referral", "REFERRAL"],
    "email": ["email", "Email "],
}
OPT_IN_SPELLINGS = {True: ["yes", "Y", "true"], False: ["no", "N", "false"]}

STORES = [
    Store(1, "Fernhill Web Shop US", "webshop", "US", date(2021, 3, 1), 45),
    Store(2, "Fernhill Web Shop EU", "Webshop", "DE", date(2022, 5, 16), 25),
    Store(3, "Fernhill App", "Mobile App", "US", date(2023, 2, 1), 15),
    Store(4, "Fernhill on Trailmart", "marketplace", "US", date(2023, 9, 4), 10),
    Store(5, "Fernhill Outlet UK", "webshop ", "GB", date(2024, 6, 3), 8),
]
EU_WEB_SHOP = STORES[1]
UK_OUTLET = STORES[4]
EU_COUNTRIES = ("DE", "NL", "FR")

SUPPLIERS = [
    # id, name, country, lead_time_days
    (1, "Alder & Pine Textiles", "PT", 21),
    (2, "Basalt Gear Co.", "VN", 45),
    (3, "Cinder Ridge Manufacturing", "US", 14),
    (4, "Driftline Outdoor Supply", "CA", 18),
    (5, "Ember Valley Cookware", "DE", 25),
    (6, "Fjordlight Footwear", "NO", 30),
    (7, "Granite Loop Packs", "TW", 40),
    (8, "Harbor Thread Mills", "GB", 20),
]

CATEGORIES = {
    "tents": Category(["Tents", "tents", "TENTS"], "TEN", (12900, 59900), 1.0, [2, 3, 7],
              ["Ridgeline 2P Tent", "Ridgeline 3P Tent", "Sundown Dome Tent", "Larchwood Tunnel Tent",
               "Summit Bivy Shelter", "Meadow Family Tent", "Trailhead Ultralight Tent",
               "Stormbreak 4-Season Tent", "Cove Beach Shelter", "Pinecone Pop-up Tent"]),
    "backpacks": Category(["Backpacks", "backpacks", " Backpacks"], "BAG", (5900, 24900), 1.4, [2, 7],
                  ["Switchback 28L Daypack", "Switchback 38L Pack", "Ridgewalker 55L Pack",
                   "Ridgewalker 65L Pack", "Commuter Roll-top 22L", "Summit Sling 6L",
                   "Trail Runner Vest 12L", "Kids Explorer 14L", "Hydration Pack 18L", "Duffel Haul 70L"]),
    "apparel": Category(["Apparel", "apparel", "APPAREL"], "APP", (2900, 17900), 2.2, [1, 8],
                ["Merino Base Layer Top", "Merino Base Layer Bottom", "Granite Fleece Jacket",
                 "Drizzle Rain Shell", "Alpine Down Vest", "Trail Hiking Pants", "Sun Hoodie",
                 "Wool Beanie", "Thermal Gloves", "Trek Socks 3-Pack"]),
    "footwear": Category(["Footwear", "footwear"], "FTW", (7900, 21900), 1.2, [6],
                 ["Scree Hiking Boot", "Scree Hiking Boot Low", "Trailglide Runner", "Camp Slip-on",
                  "Glacier Winter Boot", "River Sandal", "Approach Shoe", "Kids Trail Boot",
                  "Gaiter Pair", "Insole Pro"]),
    "cook_gear": Category(["Cook Gear", "cook gear", "COOK GEAR"], "CKG", (1500, 12900), 1.3, [5, 3],
                  ["Titan Pot 1L", "Titan Pot Set", "Canister Stove", "Folding Spork", "Camp Kettle",
                   "Collapsible Bowl", "Insulated Mug", "Water Filter Bottle", "Camp Coffee Press",
                   "Dry Bag Food Sack"]),
    "accessories": Category(["Accessories", "accessories", "ACCESSORIES "], "ACC", (900, 5900), 2.0, [4, 8],
                    ["Trekking Pole Pair", "Headlamp 400", "Microspikes", "Compass Pro", "First Aid Kit",
                     "Carabiner 3-Pack", "Solar Lantern", "Emergency Blanket", "Map Case",
                     "Paracord 30m"]),
}
# every product launches with one price, valid from this day, entered a few days before
LAUNCH_PRICE_FROM = date(2023, 12, 1)
LAUNCH_PRICE_ENTERED = datetime(2023, 11, 28, 10, 0, 0)

HOURS = list(range(24))
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 6, 6, 5, 5, 5, 6, 8, 9, 10, 9, 6, 3]

PROMOS = {
    # code: (discount share, raw spellings)
    "WELCOME10": (0.10, ["WELCOME10", "welcome10", "Welcome10 "]),
    "SPRING15": (0.15, ["SPRING15", "spring15"]),
    "BLACKFRIDAY25": (0.25, ["BLACKFRIDAY25", " blackfriday25"]),
    "LOYAL5": (0.05, ["LOYAL5", "loyal5"]),
}
PAYMENT_METHODS = {
    # method: (weight, raw spellings)
    "credit_card": (55, ["credit_card", "Credit Card", "CREDIT_CARD"]),
    "paypal": (25, ["paypal", "PayPal"]),
    "apple_pay": (10, ["apple_pay", "Apple Pay"]),
    "bank_transfer": (10, ["bank_transfer", "Bank Transfer"]),
}
GIFT_CARD_SPELLINGS = ["gift_card", "Gift Card"]
STATUS_SPELLINGS = {
    "pending": ["pending", "Pending"],
    "processing": ["processing", "Processing"],
    "shipped": ["shipped", "Shipped", "SHIPPED"],
    "delivered": ["delivered", "Delivered", "DELIVERED", "delivered "],
    "returned": ["returned", "Returned"],
    "cancelled": ["cancelled", "Canceled", "CANCELLED"],
}
CARRIERS: dict[str, list[tuple[str, float]]] = {
    "US": [("UPS", 45), ("ups", 5), ("FedEx", 30), ("USPS", 20)],
    "DE": [("DHL", 85), ("dhl ", 15)],
    "GB": [("Royal Mail", 60), ("DHL", 40)],
}
RETURN_REASONS: list[tuple[str, float]] = [
    ("Damaged", 15), ("too small", 20), ("Too Large", 15), ("not as described", 15),
    ("Changed mind", 25), ("", 10),
]
# fmt: on


class Price(NamedTuple):
    id: int
    effective_from: date
    cents: int


@dataclass
class Product:
    id: int
    category: str
    popularity: float  # relative weight among the products of an order
    discontinued_on: date | None
    prices: list[Price] = field(default_factory=list)  # filled by record_price, read by orders

    def list_price_on(self, day: date) -> int:
        valid = [p for p in self.prices if p.effective_from <= day]
        # the latest effective row wins; a same-day correction has the higher id
        return max(valid, key=lambda p: (p.effective_from, p.id)).cents

    def sellable_on(self, day: date) -> bool:
        return self.discontinued_on is None or self.discontinued_on > day


class PriceChange(NamedTuple):
    day: date
    product: Product
    cents: int


@dataclass(frozen=True)
class Customer:
    id: int
    created_at: datetime
    country: str | None
    propensity: float  # relative weight among buyers; 0.0 never orders


@dataclass(frozen=True)
class Line:
    id: int
    product: Product
    quantity: int
    unit_price: int  # cents, after discounts


class Parcel(NamedTuple):
    shipped_at: datetime
    delivered_at: datetime | None  # None: still on its way when the extract was taken


class Payment(NamedTuple):
    method: str  # raw spelling
    status: str  # raw spelling
    amount: int  # cents
    at: datetime


# -- helpers ---------------------------------------------------------------------------------------


def ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def pick(rng: random.Random, weighted: Sequence[tuple[T, float]]) -> T:
    values = [value for value, _ in weighted]
    weights = [weight for _, weight in weighted]
    return rng.choices(values, weights=weights, k=1)[0]


def random_moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randint(0, max(span, 0)))


def price_ending_99(cents: float) -> int:
    return max(99, round(cents / 100.0) * 100 - 1)


# -- reference tables: stores and suppliers (no randomness) ----------------------------------------


def store_rows() -> list[Row]:
    return [[s.id, s.name, s.channel, s.country, s.opened_on.isoformat()] for s in STORES]


def supplier_rows() -> list[Row]:
    return [[sid, name, country, lead_time] for sid, name, country, lead_time in SUPPLIERS]


# -- customers -------------------------------------------------------------------------------------


def build_customers(rng: random.Random) -> tuple[list[Customer], list[Row]]:
    """The customers (what orders need to know of them) and their raw rows."""
    customers: list[Customer] = []
    rows: list[Row] = []
    for customer_id in range(1, N_CUSTOMERS + 1):
        customer, row = make_customer(rng, customer_id)
        customers.append(customer)
        rows.append(row)
    return customers, rows


def make_customer(rng: random.Random, customer_id: int) -> tuple[Customer, Row]:
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    email = messy_email(rng, first, last, customer_id)
    if rng.random() < 0.05:
        first = first.lower()
    country, raw_country = messy_country(rng)
    source = pick(rng, SIGNUP_SOURCE_WEIGHTS)
    opt_in = raw_opt_in(rng)
    created_at = random_moment(rng, datetime(2023, 6, 1), datetime(2025, 11, 15))
    updated_at = last_update(rng, created_at)
    # about one customer in seven signs up but never buys
    propensity = 0.0 if rng.random() < 0.14 else rng.lognormvariate(0, 0.9)
    raw_source = rng.choice(SIGNUP_SOURCES[source])  # drawn last, after the propensity
    row: Row = [customer_id, first, last, email, raw_country, raw_source, opt_in, ts(created_at), ts(updated_at)]
    return Customer(customer_id, created_at, country, propensity), row


def messy_email(rng: random.Random, first: str, last: str, customer_id: int) -> str:
    """A unique address, sometimes capitalised or upper case, sometimes padded with spaces."""
    email = f"{first}.{last}{customer_id}@{rng.choice(EMAIL_DOMAINS)}".lower()
    roll = rng.random()
    if roll < 0.12:
        email = email.capitalize()
    elif roll < 0.18:
        email = email.upper()
    if rng.random() < 0.07:
        email = f" {email} "
    return email


def messy_country(rng: random.Random) -> tuple[str | None, str]:
    """The country and its raw spelling: sometimes lower case or with a trailing space, '' if unknown."""
    country = pick(rng, COUNTRIES)
    raw_country = country or ""
    if country and rng.random() < 0.12:
        raw_country = country.lower()
    if country and rng.random() < 0.05:
        raw_country = f"{raw_country} "
    return country, raw_country


def raw_opt_in(rng: random.Random) -> str:
    """Marketing consent in one of several spellings: about half said yes, 6 % were never asked ('')."""
    roll = rng.random()
    if roll < 0.06:
        return ""
    return rng.choice(OPT_IN_SPELLINGS[roll < 0.55])


def last_update(rng: random.Random, created_at: datetime) -> datetime:
    """Three customers in four last changed their record within a day of signing up, the others up to 400 days later."""
    # randint is drawn even when the choice lands on one of the zeros
    days = rng.choice([0, 0, 0, rng.randint(1, 400)])
    return min(created_at + timedelta(days=days, seconds=rng.randint(0, 86399)), AS_OF)


# -- products and their price history --------------------------------------------------------------


def build_products(rng: random.Random) -> tuple[list[Product], list[Row], list[Row]]:
    """The catalogue (for orders) and the raw rows of products and of their price history.

    Each product launches with one price (ids 1..n, in product order); the later changes are
    drawn after the whole catalogue and numbered in the order they were entered.
    """
    products: list[Product] = []
    product_rows: list[Row] = []
    price_rows: list[Row] = []
    for key, category in CATEGORIES.items():
        for number, name in enumerate(category.names, start=1):
            product, row, launch_cents = make_product(rng, len(products) + 1, key, category, number, name)
            launch = Price(len(price_rows) + 1, LAUNCH_PRICE_FROM, launch_cents)
            price_rows.append(record_price(product, launch, LAUNCH_PRICE_ENTERED))
            products.append(product)
            product_rows.append(row)
    changes = price_changes(rng, products)
    price_rows.extend(enter_price_changes(rng, changes, first_id=len(price_rows) + 1))
    return products, product_rows, price_rows


def make_product(
    rng: random.Random, product_id: int, key: str, category: Category, number: int, name: str
) -> tuple[Product, Row, int]:
    """One product, its raw row and its launch price in cents (a price ending in 99)."""
    low, high = category.price_range
    launch_cents = price_ending_99(rng.uniform(low, high))
    unit_cost = round(launch_cents * rng.uniform(0.35, 0.55))
    created_at, discontinued_on, updated_at = product_lifecycle(rng)
    sku = messy_sku(rng, category.sku_code, number)
    status = "discontinued" if discontinued_on else rng.choice(["active", "active", "Active"])
    row: Row = [
        product_id,
        sku,
        name,
        rng.choice(category.spellings),
        rng.choice(category.supplier_ids),
        unit_cost,
        status,
        ts(created_at),
        ts(updated_at),
    ]
    product = Product(product_id, key, category.popularity * rng.uniform(0.5, 1.5), discontinued_on)
    return product, row, launch_cents


def product_lifecycle(rng: random.Random) -> tuple[datetime, date | None, datetime]:
    """When the product was created, discontinued (8 %, during 2025) and last updated."""
    created_at = random_moment(rng, datetime(2023, 1, 10), datetime(2023, 11, 20))
    if rng.random() < 0.08:
        discontinued_on = date(2025, 1, 1) + timedelta(days=rng.randint(0, 300))
        return created_at, discontinued_on, midnight(discontinued_on) + timedelta(hours=9)
    if rng.random() < 0.3:
        return created_at, None, random_moment(rng, datetime(2024, 1, 1), datetime(2025, 12, 20))
    return created_at, None, created_at


def messy_sku(rng: random.Random, sku_code: str, number: int) -> str:
    """FH-<code>-<nnn>, sometimes in lower case or with a trailing space."""
    sku = f"FH-{sku_code}-{number:03d}"
    if rng.random() < 0.1:
        sku = sku.lower()
    if rng.random() < 0.05:
        sku = f"{sku} "
    return sku


def record_price(product: Product, price: Price, entered: datetime) -> Row:
    """Add the price to the product's price list (which orders read) and return its raw row."""
    product.prices.append(price)
    return [price.id, product.id, price.cents, price.effective_from.isoformat(), ts(entered)]


def price_changes(rng: random.Random, products: list[Product]) -> list[PriceChange]:
    """Up to three list-price changes per product, each within 15 % of the price before it.

    Sorted the way they were entered: by day, then product.
    """
    changes: list[PriceChange] = []
    for product in products:
        cents = product.prices[0].cents
        n_changes = rng.choice([0, 1, 1, 2, 3])
        for offset in sorted(rng.sample(range(40, 700), n_changes)):
            cents = price_ending_99(cents * rng.uniform(0.85, 1.15))
            changes.append(PriceChange(FIRST_ORDER_DAY + timedelta(days=offset), product, cents))
    changes.sort(key=lambda c: (c.day, c.product.id))
    return changes


def enter_price_changes(rng: random.Random, changes: list[PriceChange], first_id: int) -> list[Row]:
    """Record the changes, each entered at 9:00 one to five days before it takes effect.

    Five of them were typos, corrected three hours later: a second row for the same product and
    day, with the higher id (int_product_prices_windowed keeps the latest).
    """
    corrected = set(rng.sample(range(len(changes)), 5))
    rows: list[Row] = []
    for index, change in enumerate(changes):
        entered = midnight(change.day) - timedelta(days=rng.randint(1, 5), hours=-9)
        rows.append(record_price(change.product, Price(first_id + len(rows), change.day, change.cents), entered))
        if index in corrected:
            fixed = Price(first_id + len(rows), change.day, price_ending_99(change.cents * rng.uniform(0.9, 0.97)))
            rows.append(record_price(change.product, fixed, entered + timedelta(hours=3)))
    return rows


# -- orders ----------------------------------------------------------------------------------------


def order_moments(rng: random.Random) -> list[datetime]:
    """When the orders were placed, in time order; days weighted by day_weights, hours by HOUR_WEIGHTS."""
    n_days = (LAST_ORDER_DAY - FIRST_ORDER_DAY).days + 1
    weights = day_weights(n_days)
    moments = []
    for _ in range(N_ORDERS):
        day = FIRST_ORDER_DAY + timedelta(days=rng.choices(range(n_days), weights=weights, k=1)[0])
        hour = rng.choices(HOURS, weights=HOUR_WEIGHTS, k=1)[0]
        moments.append(midnight(day) + timedelta(hours=hour, minutes=rng.randint(0, 59), seconds=rng.randint(0, 59)))
    return sorted(moments)


def day_weights(n_days: int) -> list[float]:
    """Growth over the two years (+90 %), a November/December peak, busier weekends."""
    weights = []
    for i in range(n_days):
        day = FIRST_ORDER_DAY + timedelta(days=i)
        weight = 1.0 + 0.9 * i / n_days
        if day.month in (11, 12):
            weight *= 1.8
        if day.weekday() >= 5:
            weight *= 1.15
        weights.append(weight)
    return weights


@dataclass
class OrderBook:
    """The five order tables, filled one order at a time.

    Ids run across all orders without gaps, so the next id of a table is its row count plus one.
    """

    customers: list[Customer]
    products: list[Product]
    buyers: set[int] = field(default_factory=set)  # customers who have ordered before
    orders: list[Row] = field(default_factory=list)
    items: list[Row] = field(default_factory=list)
    payments: list[Row] = field(default_factory=list)
    shipments: list[Row] = field(default_factory=list)
    returns: list[Row] = field(default_factory=list)

    def add(self, rng: random.Random, order_id: int, ordered_at: datetime) -> None:
        """Draw one order and its lifecycle: lines, then fulfilment and returns, then payments and parcels."""
        customer = choose_customer(rng, self.customers, ordered_at)
        store = choose_store(rng, customer.country, ordered_at.date())
        promo = choose_promo(rng, ordered_at, first_order=customer.id not in self.buyers)
        self.buyers.add(customer.id)
        chosen = choose_products(rng, self.products, ordered_at.date())
        lines = price_lines(rng, chosen, ordered_at.date(), promo, first_id=len(self.items) + 1)
        express = rng.random() < 0.15
        subtotal = sum(line.quantity * line.unit_price for line in lines)
        fee = shipping_fee(subtotal, express)
        paid_at = ordered_at + timedelta(minutes=rng.randint(1, 30))
        status, parcels = fulfil(rng, ordered_at, len(lines), express)
        if status == "delivered":
            returns = return_rows(rng, lines, parcels, first_id=len(self.returns) + 1)
            self.returns.extend(returns)
            status = "returned" if returns else status
        raw_promo = rng.choice(PROMOS[promo][1]) if promo else ""
        raw_status = rng.choice(STATUS_SPELLINGS[status])
        self.orders.append([order_id, customer.id, store.id, ts(ordered_at), raw_status, raw_promo, fee])
        self.items.extend([line.id, order_id, line.product.id, line.quantity, line.unit_price] for line in lines)
        attempts = payment_attempts(rng, status, subtotal + fee, paid_at)
        first_payment_id = len(self.payments) + 1
        self.payments.extend(
            [first_payment_id + n, order_id, p.method, p.status, p.amount, ts(p.at)] for n, p in enumerate(attempts)
        )
        self.shipments.extend(shipment_rows(rng, order_id, parcels, store, express, first_id=len(self.shipments) + 1))

    def rows(self) -> dict[str, list[Row]]:
        return {
            "raw_orders": self.orders,
            "raw_order_items": self.items,
            "raw_payments": self.payments,
            "raw_shipments": self.shipments,
            "raw_returns": self.returns,
        }


def choose_customer(rng: random.Random, customers: list[Customer], ordered_at: datetime) -> Customer:
    """A buyer who had signed up at least an hour before, weighted by their propensity."""
    eligible = [c for c in customers if c.created_at < ordered_at - timedelta(hours=1) and c.propensity > 0]
    return rng.choices(eligible, weights=[c.propensity for c in eligible], k=1)[0]


def choose_store(rng: random.Random, country: str | None, day: date) -> Store:
    """The store, weighted among those open that day.

    Continental Europeans buy from the EU web shop (85 %) and Britons from the UK outlet once it has
    opened (60 %), or else from any open store; everyone else from any open store but the outlet.
    """
    open_stores = [(s, s.weight) for s in STORES if s.opened_on <= day]
    if country in EU_COUNTRIES:
        return EU_WEB_SHOP if rng.random() < 0.85 else pick(rng, open_stores)
    if country == "GB" and UK_OUTLET.opened_on <= day:
        return UK_OUTLET if rng.random() < 0.6 else pick(rng, open_stores)
    return pick(rng, [(s, w) for s, w in open_stores if s.id != UK_OUTLET.id])


def choose_promo(rng: random.Random, ordered_at: datetime, first_order: bool) -> str | None:
    """At most one code; the draws stop at the first that applies.

    WELCOME10 on a first order, SPRING15 from March to May, BLACKFRIDAY25 from 20 November,
    LOYAL5 on a repeat order.
    """
    if first_order and rng.random() < 0.35:
        return "WELCOME10"
    if ordered_at.month in (3, 4, 5) and rng.random() < 0.15:
        return "SPRING15"
    if ordered_at.month == 11 and ordered_at.day >= 20 and rng.random() < 0.5:
        return "BLACKFRIDAY25"
    if not first_order and rng.random() < 0.05:
        return "LOYAL5"
    return None


def choose_products(rng: random.Random, products: list[Product], day: date) -> list[Product]:
    """One to five different products still sold that day, the popular ones more often."""
    sellable = [p for p in products if p.sellable_on(day)]
    popularity = [p.popularity for p in sellable]
    n_lines = rng.choices([1, 2, 3, 4, 5], weights=[28, 28, 22, 13, 9], k=1)[0]
    chosen: list[Product] = []
    while len(chosen) < n_lines:
        candidate = rng.choices(sellable, weights=popularity, k=1)[0]
        if candidate not in chosen:
            chosen.append(candidate)
    return chosen


def price_lines(rng: random.Random, products: list[Product], day: date, promo: str | None, first_id: int) -> list[Line]:
    """The order's lines, at that day's list price less the promotion (and, in 4 % of the lines, less
    a further 10 % price match granted by an agent)."""
    promo_share = PROMOS[promo][0] if promo else 0.0
    lines: list[Line] = []
    for product in products:
        share = promo_share
        if rng.random() < 0.04:
            share += 0.10
        unit_price = round(product.list_price_on(day) * (1 - share))
        quantity = rng.choices([1, 2, 3], weights=[80, 15, 5], k=1)[0]
        lines.append(Line(first_id + len(lines), product, quantity, unit_price))
    return lines


def shipping_fee(subtotal: int, express: bool) -> int:
    """Express costs 12.95; standard shipping is free from 75.00, 6.95 below."""
    if express:
        return 1295
    return 0 if subtotal >= 7500 else 695


def fulfil(rng: random.Random, ordered_at: datetime, n_lines: int, express: bool) -> tuple[str, list[Parcel]]:
    """The order's status when the extract was taken, and the parcels shipped by then.

    4 % are cancelled and orders younger than six hours are pending; the others are processing
    until a parcel ships, shipped until every parcel has arrived, then delivered.
    """
    if rng.random() < 0.04:
        return "cancelled", []
    if AS_OF - ordered_at < timedelta(hours=6):
        return "pending", []
    ship_times = dispatch_times(rng, ordered_at, n_lines)
    parcels = [transport(rng, shipped_at, express) for shipped_at in ship_times if shipped_at <= AS_OF]
    if not parcels:
        return "processing", parcels
    if len(parcels) == len(ship_times) and all(p.delivered_at for p in parcels):
        return "delivered", parcels
    return "shipped", parcels


def dispatch_times(rng: random.Random, ordered_at: datetime, n_lines: int) -> list[datetime]:
    """Dispatch 4 to 60 hours after the order; 8 % of multi-line orders ship in two parcels."""
    first = ordered_at + timedelta(hours=rng.randint(4, 60), minutes=rng.randint(0, 59))
    if n_lines >= 2 and rng.random() < 0.08:
        return [first, first + timedelta(days=rng.randint(1, 3), hours=rng.randint(0, 8))]
    return [first]


def transport(rng: random.Random, shipped_at: datetime, express: bool) -> Parcel:
    """A parcel in transit 1-3 days (express) or 2-8 days; not yet delivered if it arrives after the extract."""
    transit_days = rng.randint(1, 3) if express else rng.randint(2, 8)
    arrives_at = shipped_at + timedelta(days=transit_days, hours=rng.randint(0, 10))
    return Parcel(shipped_at, arrives_at if arrives_at <= AS_OF else None)


def return_rows(rng: random.Random, lines: list[Line], parcels: list[Parcel], first_id: int) -> list[Row]:
    """What came back of a delivered order: nothing (an empty list) for most.

    8 % are returned 2 to 25 days after the last parcel arrived, if that is before the extract:
    some of the lines, some of each line's quantity, refunded at the price paid.
    """
    if rng.random() >= 0.08:
        return []
    last_delivery = max(p.delivered_at for p in parcels if p.delivered_at is not None)
    returned_at = last_delivery + timedelta(days=rng.randint(2, 25), hours=rng.randint(0, 12))
    if returned_at > AS_OF:
        return []
    rows: list[Row] = []
    for line in rng.sample(lines, rng.randint(1, len(lines))):
        quantity = rng.randint(1, line.quantity)
        reason = pick(rng, RETURN_REASONS)
        logged_at = returned_at + timedelta(minutes=rng.randint(0, 90))
        rows.append([first_id + len(rows), line.id, quantity, reason, quantity * line.unit_price, ts(logged_at)])
    return rows


def payment_attempts(rng: random.Random, order_status: str, total: int, paid_at: datetime) -> list[Payment]:
    """The payment provider's log for the order, all in one method (a gift card aside).

    A pending order has at most a failed attempt (30 %); 60 % of cancelled orders were paid and
    refunded; any other order was paid in full.
    """
    method = pick(rng, [(m, w) for m, (w, _) in PAYMENT_METHODS.items()])
    spelling = rng.choice(PAYMENT_METHODS[method][1])
    if order_status == "pending":
        return [Payment(spelling, "failed", total, paid_at)] if rng.random() < 0.3 else []
    if order_status == "cancelled":
        if rng.random() < 0.6:
            return [Payment(spelling, rng.choice(["refunded", "Refunded"]), total, paid_at)]
        return []
    return settled_payments(rng, spelling, total, paid_at)


def settled_payments(rng: random.Random, spelling: str, total: int, paid_at: datetime) -> list[Payment]:
    """A paid order: after a failed attempt in 6 % of cases; 10 % of those above 40.00 partly by gift card."""
    attempts = []
    if rng.random() < 0.06:
        attempts.append(Payment(spelling, rng.choice(["failed", "FAILED"]), total, paid_at - timedelta(minutes=1)))
    if total > 4000 and rng.random() < 0.10:
        gift = min(rng.choice([2500, 5000]), total - 1000)
        attempts.append(Payment(rng.choice(GIFT_CARD_SPELLINGS), "success", gift, paid_at))
        attempts.append(Payment(spelling, "success", total - gift, paid_at + timedelta(seconds=20)))
    else:
        attempts.append(Payment(spelling, rng.choice(["success", "success", "Success"]), total, paid_at))
    return attempts


def shipment_rows(
    rng: random.Random, order_id: int, parcels: list[Parcel], store: Store, express: bool, first_id: int
) -> list[Row]:
    """One row per parcel: a carrier of the store's country, and what it billed (6.50 or, express,
    14.00, plus up to 4.50)."""
    rows: list[Row] = []
    for parcel in parcels:
        carrier = pick(rng, CARRIERS[store.country])
        cost = (1400 if express else 650) + rng.randint(0, 450)
        rows.append(
            [
                first_id + len(rows),
                order_id,
                carrier,
                "express" if express else "standard",
                ts(parcel.shipped_at),
                ts(parcel.delivered_at) if parcel.delivered_at else "",
                cost,
            ]
        )
    return rows


# -- the whole data set, and the command line ------------------------------------------------------


def build(rng: random.Random) -> dict[str, list[Row]]:
    """Every table's rows, by seed name. The draws go customers, products, price changes, orders."""
    customers, customer_rows = build_customers(rng)
    products, product_rows, price_rows = build_products(rng)
    book = OrderBook(customers, products)
    for order_id, ordered_at in enumerate(order_moments(rng), start=1):
        book.add(rng, order_id, ordered_at)
    return {
        "raw_stores": store_rows(),
        "raw_suppliers": supplier_rows(),
        "raw_customers": customer_rows,
        "raw_products": product_rows,
        "raw_product_prices": price_rows,
        **book.rows(),
    }


def render(header: list[str], rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


class SeedFile(NamedTuple):
    path: Path
    content: str
    n_rows: int


def seed_files(out: Path) -> list[SeedFile]:
    """Every seed file under `out` with its expected content, in file name order."""
    tables = build(random.Random(SEED))  # noqa: S311 - reproducible sample data, not cryptography
    return [
        SeedFile(out / f"{name}.csv", render(HEADERS[name], rows), len(rows)) for name, rows in sorted(tables.items())
    ]


def stale_files(files: list[SeedFile]) -> list[str]:
    """The names of the files that are missing or differ from their expected content."""
    return [f.path.name for f in files if not f.path.exists() or f.path.read_text(encoding="utf-8") != f.content]


def write_files(files: list[SeedFile]) -> None:
    for f in files:
        f.path.parent.mkdir(parents=True, exist_ok=True)
        f.path.write_text(f.content, encoding="utf-8")
        print(f"{f.path.name:<28} {f.n_rows:>5} rows")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the CSVs are up to date (exit 1 if not)")
    parser.add_argument("--out", type=Path, default=SEEDS_DIR, help="target folder (default: dbt/seeds)")
    args = parser.parse_args(argv)

    files = seed_files(args.out)
    if not args.check:
        write_files(files)
        return 0
    stale = stale_files(files)
    if stale:
        print("stale seed files: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
