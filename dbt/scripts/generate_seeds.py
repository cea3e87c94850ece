"""Generate the raw seed CSVs of the shop_analytics example project.

The data describes Fernhill Outfitters, a made-up online shop for outdoor gear
that sells through a few storefronts (web shops, an app, a marketplace).
Everything is derived from one fixed random seed, so running this script again
rewrites byte-identical files:

    python dbt/scripts/generate_seeds.py            # writes dbt/seeds/raw_*.csv
    python dbt/scripts/generate_seeds.py --check    # fails if the CSVs are stale

Only the standard library is used. The raw data is deliberately a little
dirty, the way source systems deliver it, so the staging layer has work to do:

* money is stored as integer cents,
* enum-like text comes with mixed casing, stray whitespace and spelling
  variants ("Canceled" vs "cancelled", "Credit Card" vs "credit_card"),
* emails and country codes are not normalised, some values are missing,
* the price history contains same-day corrections (two rows for one day).

Values that CSV readers treat as NULL markers ("NA", "null", "none", "n/a")
are never written as text, so DuckDB and BigQuery load the same rows.
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
from typing import Any, TypeVar

T = TypeVar("T")
Row = list[Any]  # one CSV row
Table = tuple[list[str], list[Row]]  # header, rows

SEED = 20240117
FIRST_ORDER_DAY = date(2024, 1, 1)
LAST_ORDER_DAY = date(2025, 12, 31)
AS_OF = datetime(2025, 12, 31, 23, 59, 59)  # the moment the extract was taken
N_CUSTOMERS = 150
N_ORDERS = 800

SEEDS_DIR = Path(__file__).resolve().parent.parent / "seeds"

# fmt: off
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
SIGNUP_SOURCES = {
    "organic": ["organic", "Organic"],
    "paid_search": ["paid_search", "Paid Search", "PAID_SEARCH"],
    "social": ["social", "Social"],
    "referral": ["referral", "Referral", "REFERRAL"],
    "email": ["email", "Email "],
}
OPT_IN_SPELLINGS = {True: ["yes", "Y", "true"], False: ["no", "N", "false"]}

STORES = [
    # id, name, channel spelling in the source, country, opened_on, weight
    (1, "Fernhill Web Shop US", "webshop", "US", date(2021, 3, 1), 45),
    (2, "Fernhill Web Shop EU", "Webshop", "DE", date(2022, 5, 16), 25),
    (3, "Fernhill App", "Mobile App", "US", date(2023, 2, 1), 15),
    (4, "Fernhill on Trailmart", "marketplace", "US", date(2023, 9, 4), 10),
    (5, "Fernhill Outlet UK", "webshop ", "GB", date(2024, 6, 3), 8),
]

SUPPLIERS = [
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
    # raw category spellings, sku code, price range in cents, popularity, suppliers, names
    "tents": (["Tents", "tents", "TENTS"], "TEN", (12900, 59900), 1.0, [2, 3, 7],
              ["Ridgeline 2P Tent", "Ridgeline 3P Tent", "Sundown Dome Tent", "Larchwood Tunnel Tent",
               "Summit Bivy Shelter", "Meadow Family Tent", "Trailhead Ultralight Tent",
               "Stormbreak 4-Season Tent", "Cove Beach Shelter", "Pinecone Pop-up Tent"]),
    "backpacks": (["Backpacks", "backpacks", " Backpacks"], "BAG", (5900, 24900), 1.4, [2, 7],
                  ["Switchback 28L Daypack", "Switchback 38L Pack", "Ridgewalker 55L Pack",
                   "Ridgewalker 65L Pack", "Commuter Roll-top 22L", "Summit Sling 6L",
                   "Trail Runner Vest 12L", "Kids Explorer 14L", "Hydration Pack 18L", "Duffel Haul 70L"]),
    "apparel": (["Apparel", "apparel", "APPAREL"], "APP", (2900, 17900), 2.2, [1, 8],
                ["Merino Base Layer Top", "Merino Base Layer Bottom", "Granite Fleece Jacket",
                 "Drizzle Rain Shell", "Alpine Down Vest", "Trail Hiking Pants", "Sun Hoodie",
                 "Wool Beanie", "Thermal Gloves", "Trek Socks 3-Pack"]),
    "footwear": (["Footwear", "footwear"], "FTW", (7900, 21900), 1.2, [6],
                 ["Scree Hiking Boot", "Scree Hiking Boot Low", "Trailglide Runner", "Camp Slip-on",
                  "Glacier Winter Boot", "River Sandal", "Approach Shoe", "Kids Trail Boot",
                  "Gaiter Pair", "Insole Pro"]),
    "cook_gear": (["Cook Gear", "cook gear", "COOK GEAR"], "CKG", (1500, 12900), 1.3, [5, 3],
                  ["Titan Pot 1L", "Titan Pot Set", "Canister Stove", "Folding Spork", "Camp Kettle",
                   "Collapsible Bowl", "Insulated Mug", "Water Filter Bottle", "Camp Coffee Press",
                   "Dry Bag Food Sack"]),
    "accessories": (["Accessories", "accessories", "ACCESSORIES "], "ACC", (900, 5900), 2.0, [4, 8],
                    ["Trekking Pole Pair", "Headlamp 400", "Microspikes", "Compass Pro", "First Aid Kit",
                     "Carabiner 3-Pack", "Solar Lantern", "Emergency Blanket", "Map Case",
                     "Paracord 30m"]),
}

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


@dataclass
class Product:
    id: int
    category: str
    popularity: float
    discontinued_on: date | None
    prices: list[tuple[int, date, int]] = field(default_factory=list)  # (price_id, from, cents)

    def list_price_on(self, day: date) -> int:
        valid = [p for p in self.prices if p[1] <= day]
        # the latest effective row wins; a same-day correction has the higher id
        return max(valid, key=lambda p: (p[1], p[0]))[2]


def ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def pick(rng: random.Random, weighted: Sequence[tuple[T, float]]) -> T:
    values = [value for value, _ in weighted]
    weights = [weight for _, weight in weighted]
    return rng.choices(values, weights=weights, k=1)[0]


def random_moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randint(0, max(span, 0)))


def price_ending_99(cents: float) -> int:
    return max(99, round(cents / 100.0) * 100 - 1)


def build(rng: random.Random) -> dict[str, Table]:
    tables: dict[str, Table] = {}

    # stores and suppliers: small reference tables
    tables["raw_stores"] = (
        ["id", "name", "channel", "country", "opened_on"],
        [[s[0], s[1], s[2], s[3], s[4].isoformat()] for s in STORES],
    )
    tables["raw_suppliers"] = (
        ["id", "name", "country", "lead_time_days"],
        [list(s) for s in SUPPLIERS],
    )

    # customers
    customer_rows: list[Row] = []
    customers: list[tuple[int, datetime, str | None, float]] = []  # id, created_at, country, propensity
    for cid in range(1, N_CUSTOMERS + 1):
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        email = f"{first}.{last}{cid}@{rng.choice(EMAIL_DOMAINS)}".lower()
        roll = rng.random()
        if roll < 0.12:
            email = email.capitalize()
        elif roll < 0.18:
            email = email.upper()
        if rng.random() < 0.07:
            email = f" {email} "
        if rng.random() < 0.05:
            first = first.lower()
        country = pick(rng, COUNTRIES)
        raw_country = country or ""
        if country and rng.random() < 0.12:
            raw_country = country.lower()
        if country and rng.random() < 0.05:
            raw_country = f"{raw_country} "
        source = pick(rng, [("organic", 35), ("paid_search", 25), ("social", 18), ("referral", 12), ("email", 10)])
        opt_in_roll = rng.random()
        opt_in = "" if opt_in_roll < 0.06 else rng.choice(OPT_IN_SPELLINGS[opt_in_roll < 0.55])
        created_at = random_moment(rng, datetime(2023, 6, 1), datetime(2025, 11, 15))
        updated_at = min(
            created_at + timedelta(days=rng.choice([0, 0, 0, rng.randint(1, 400)]), seconds=rng.randint(0, 86399)),
            AS_OF,
        )
        # about one customer in seven signs up but never buys
        propensity = 0.0 if rng.random() < 0.14 else rng.lognormvariate(0, 0.9)
        customers.append((cid, created_at, country, propensity))
        customer_rows.append(
            [
                cid,
                first,
                last,
                email,
                raw_country,
                rng.choice(SIGNUP_SOURCES[source]),
                opt_in,
                ts(created_at),
                ts(updated_at),
            ]
        )
    tables["raw_customers"] = (
        [
            "id",
            "first_name",
            "last_name",
            "email",
            "country",
            "signup_source",
            "marketing_opt_in",
            "created_at",
            "updated_at",
        ],
        customer_rows,
    )

    # products and their price history
    product_rows: list[Row] = []
    price_rows: list[Row] = []
    products: list[Product] = []
    pid = 0
    price_id = 0
    for category, (spellings, code, (lo, hi), popularity, supplier_ids, names) in CATEGORIES.items():
        for n, name in enumerate(names, start=1):
            pid += 1
            initial = price_ending_99(rng.uniform(lo, hi))
            unit_cost = round(initial * rng.uniform(0.35, 0.55))
            created_at = random_moment(rng, datetime(2023, 1, 10), datetime(2023, 11, 20))
            discontinued_on = None
            updated_at = created_at
            if rng.random() < 0.08:
                discontinued_on = date(2025, 1, 1) + timedelta(days=rng.randint(0, 300))
                updated_at = datetime.combine(discontinued_on, datetime.min.time()) + timedelta(hours=9)
            elif rng.random() < 0.3:
                updated_at = random_moment(rng, datetime(2024, 1, 1), datetime(2025, 12, 20))
            sku = f"FH-{code}-{n:03d}"
            if rng.random() < 0.1:
                sku = sku.lower()
            if rng.random() < 0.05:
                sku = f"{sku} "
            status = "discontinued" if discontinued_on else rng.choice(["active", "active", "Active"])
            product_rows.append(
                [
                    pid,
                    sku,
                    name,
                    rng.choice(spellings),
                    rng.choice(supplier_ids),
                    unit_cost,
                    status,
                    ts(created_at),
                    ts(updated_at),
                ]
            )
            product = Product(pid, category, popularity * rng.uniform(0.5, 1.5), discontinued_on)
            price_id += 1
            product.prices.append((price_id, date(2023, 12, 1), initial))
            price_rows.append([price_id, pid, initial, "2023-12-01", ts(datetime(2023, 11, 28, 10, 0, 0))])
            products.append(product)

    # later price changes, numbered in the order they were entered
    changes = []
    for product in products:
        current = product.prices[0][2]
        days = sorted(rng.sample(range(40, 700), rng.choice([0, 1, 1, 2, 3])))
        for offset in days:
            current = price_ending_99(current * rng.uniform(0.85, 1.15))
            changes.append((FIRST_ORDER_DAY + timedelta(days=offset), product, current))
    changes.sort(key=lambda c: (c[0], c[1].id))
    corrected = set(rng.sample(range(len(changes)), 5))
    for idx, (day, product, cents) in enumerate(changes):
        entered = datetime.combine(day, datetime.min.time()) - timedelta(days=rng.randint(1, 5), hours=-9)
        price_id += 1
        product.prices.append((price_id, day, cents))
        price_rows.append([price_id, product.id, cents, day.isoformat(), ts(entered)])
        if idx in corrected:
            # a typo fixed a few hours later: same product, same day, higher id
            fixed = price_ending_99(cents * rng.uniform(0.9, 0.97))
            price_id += 1
            product.prices.append((price_id, day, fixed))
            price_rows.append([price_id, product.id, fixed, day.isoformat(), ts(entered + timedelta(hours=3))])
    price_rows.sort(key=lambda r: r[0])
    tables["raw_products"] = (
        ["id", "sku", "name", "category", "supplier_id", "unit_cost_cents", "status", "created_at", "updated_at"],
        product_rows,
    )
    tables["raw_product_prices"] = (
        ["id", "product_id", "list_price_cents", "effective_from", "created_at"],
        price_rows,
    )

    # order moments: growth over two years, a November/December peak, busier weekends
    n_days = (LAST_ORDER_DAY - FIRST_ORDER_DAY).days + 1
    day_weights = []
    for i in range(n_days):
        day = FIRST_ORDER_DAY + timedelta(days=i)
        weight = 1.0 + 0.9 * i / n_days
        if day.month in (11, 12):
            weight *= 1.8
        if day.weekday() >= 5:
            weight *= 1.15
        day_weights.append(weight)
    hours = list(range(24))
    hour_weights = [1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 6, 6, 5, 5, 5, 6, 8, 9, 10, 9, 6, 3]
    moments = []
    for _ in range(N_ORDERS):
        day = FIRST_ORDER_DAY + timedelta(days=rng.choices(range(n_days), weights=day_weights, k=1)[0])
        hour = rng.choices(hours, weights=hour_weights, k=1)[0]
        moments.append(
            datetime.combine(day, datetime.min.time())
            + timedelta(hours=hour, minutes=rng.randint(0, 59), seconds=rng.randint(0, 59))
        )
    moments.sort()

    order_rows: list[Row] = []
    item_rows: list[Row] = []
    payment_rows: list[Row] = []
    shipment_rows: list[Row] = []
    return_rows: list[Row] = []
    orders_by_customer: dict[int, int] = {}
    item_id = payment_id = shipment_id = return_id = 0
    for oid, ordered_at in enumerate(moments, start=1):
        eligible = [c for c in customers if c[1] < ordered_at - timedelta(hours=1) and c[3] > 0]
        customer = rng.choices(eligible, weights=[c[3] for c in eligible], k=1)[0]
        cid, _, country, _ = customer
        open_stores = [s for s in STORES if s[4] <= ordered_at.date()]
        if country in ("DE", "NL", "FR"):
            store = 2 if rng.random() < 0.85 else pick(rng, [(s[0], s[5]) for s in open_stores])
        elif country == "GB" and any(s[0] == 5 for s in open_stores):
            store = 5 if rng.random() < 0.6 else pick(rng, [(s[0], s[5]) for s in open_stores])
        else:
            store = pick(rng, [(s[0], s[5]) for s in open_stores if s[0] != 5])
        store_country = next(s[3] for s in STORES if s[0] == store)

        # promotion codes
        promo = None
        is_first = cid not in orders_by_customer
        if is_first and rng.random() < 0.35:
            promo = "WELCOME10"
        elif ordered_at.month in (3, 4, 5) and rng.random() < 0.15:
            promo = "SPRING15"
        elif ordered_at.month == 11 and ordered_at.day >= 20 and rng.random() < 0.5:
            promo = "BLACKFRIDAY25"
        elif not is_first and rng.random() < 0.05:
            promo = "LOYAL5"
        orders_by_customer[cid] = orders_by_customer.get(cid, 0) + 1
        promo_share = PROMOS[promo][0] if promo else 0.0

        # order lines
        sellable = [p for p in products if p.discontinued_on is None or p.discontinued_on > ordered_at.date()]
        n_lines = rng.choices([1, 2, 3, 4, 5], weights=[28, 28, 22, 13, 9], k=1)[0]
        chosen: list[Product] = []
        while len(chosen) < n_lines:
            candidate = rng.choices(sellable, weights=[p.popularity for p in sellable], k=1)[0]
            if candidate not in chosen:
                chosen.append(candidate)
        lines = []
        for product in chosen:
            list_price = product.list_price_on(ordered_at.date())
            share = promo_share
            if rng.random() < 0.04:
                share += 0.10  # an agent-granted price match on top of any promotion
            unit_price = round(list_price * (1 - share))
            quantity = rng.choices([1, 2, 3], weights=[80, 15, 5], k=1)[0]
            item_id += 1
            lines.append((item_id, product, quantity, unit_price))
            item_rows.append([item_id, oid, product.id, quantity, unit_price])
        subtotal = sum(q * u for _, _, q, u in lines)
        express = rng.random() < 0.15
        shipping_fee = 1295 if express else (0 if subtotal >= 7500 else 695)
        total = subtotal + shipping_fee

        # lifecycle: cancel, pay, ship (sometimes in two parcels), deliver, return
        paid_at = ordered_at + timedelta(minutes=rng.randint(1, 30))
        if rng.random() < 0.04:
            status = "cancelled"
        elif AS_OF - ordered_at < timedelta(hours=6):
            status = "pending"
        else:
            status = "processing"
        parcels: list[tuple[datetime, datetime | None]] = []
        if status == "processing":
            first_ship = ordered_at + timedelta(hours=rng.randint(4, 60), minutes=rng.randint(0, 59))
            ship_times = [first_ship]
            if len(lines) >= 2 and rng.random() < 0.08:
                ship_times.append(first_ship + timedelta(days=rng.randint(1, 3), hours=rng.randint(0, 8)))
            for shipped_at in ship_times:
                if shipped_at > AS_OF:
                    continue
                transit_days = rng.randint(1, 3) if express else rng.randint(2, 8)
                arrives_at = shipped_at + timedelta(days=transit_days, hours=rng.randint(0, 10))
                parcels.append((shipped_at, arrives_at if arrives_at <= AS_OF else None))
            if parcels:
                status = "shipped"
                if len(parcels) == len(ship_times) and all(p[1] for p in parcels):
                    status = "delivered"

        if status == "delivered" and rng.random() < 0.08:
            last_delivery = max(p[1] for p in parcels if p[1] is not None)
            returned_at = last_delivery + timedelta(days=rng.randint(2, 25), hours=rng.randint(0, 12))
            if returned_at <= AS_OF:
                status = "returned"
                for line in rng.sample(lines, rng.randint(1, len(lines))):
                    line_id, _, quantity, unit_price = line
                    qty_back = rng.randint(1, quantity)
                    return_id += 1
                    return_rows.append(
                        [
                            return_id,
                            line_id,
                            qty_back,
                            pick(rng, RETURN_REASONS),
                            qty_back * unit_price,
                            ts(returned_at + timedelta(minutes=rng.randint(0, 90))),
                        ]
                    )

        raw_promo = rng.choice(PROMOS[promo][1]) if promo else ""
        order_rows.append(
            [oid, cid, store, ts(ordered_at), rng.choice(STATUS_SPELLINGS[status]), raw_promo, shipping_fee]
        )

        # payments
        def pay(method_spelling: str, pay_status: str, amount: int, at: datetime, order_id: int = oid) -> None:
            nonlocal payment_id
            payment_id += 1
            payment_rows.append([payment_id, order_id, method_spelling, pay_status, amount, ts(at)])

        method = pick(rng, [(m, w) for m, (w, _) in PAYMENT_METHODS.items()])
        spelling = rng.choice(PAYMENT_METHODS[method][1])
        if status == "pending":
            if rng.random() < 0.3:
                pay(spelling, "failed", total, paid_at)
        elif status == "cancelled":
            if rng.random() < 0.6:
                pay(spelling, rng.choice(["refunded", "Refunded"]), total, paid_at)
        else:
            if rng.random() < 0.06:
                pay(spelling, rng.choice(["failed", "FAILED"]), total, paid_at - timedelta(minutes=1))
            if total > 4000 and rng.random() < 0.10:
                gift = min(rng.choice([2500, 5000]), total - 1000)
                pay(rng.choice(GIFT_CARD_SPELLINGS), "success", gift, paid_at)
                pay(spelling, "success", total - gift, paid_at + timedelta(seconds=20))
            else:
                pay(spelling, rng.choice(["success", "success", "Success"]), total, paid_at)

        # shipments
        for shipped_at, delivered_at in parcels:
            shipment_id += 1
            carrier = pick(rng, CARRIERS[store_country])
            base_cost = 1400 if express else 650
            shipment_rows.append(
                [
                    shipment_id,
                    oid,
                    carrier,
                    "express" if express else "standard",
                    ts(shipped_at),
                    ts(delivered_at) if delivered_at else "",
                    base_cost + rng.randint(0, 450),
                ]
            )

    tables["raw_orders"] = (
        ["id", "customer_id", "store_id", "created_at", "status", "promo_code", "shipping_fee_cents"],
        order_rows,
    )
    tables["raw_order_items"] = (
        ["id", "order_id", "product_id", "quantity", "unit_price_cents"],
        item_rows,
    )
    tables["raw_payments"] = (
        ["id", "order_id", "payment_method", "status", "amount_cents", "created_at"],
        payment_rows,
    )
    tables["raw_shipments"] = (
        ["id", "order_id", "carrier", "service_level", "shipped_at", "delivered_at", "cost_cents"],
        shipment_rows,
    )
    return_rows.sort(key=lambda r: r[0])
    tables["raw_returns"] = (
        ["id", "order_item_id", "quantity", "reason", "refund_cents", "returned_at"],
        return_rows,
    )
    return tables


def render(header: list[str], rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the CSVs are up to date")
    parser.add_argument("--out", type=Path, default=SEEDS_DIR, help="target folder (default: dbt/seeds)")
    args = parser.parse_args()

    tables = build(random.Random(SEED))  # noqa: S311 - reproducible sample data, not cryptography
    stale = []
    for name, (header, rows) in sorted(tables.items()):
        content = render(header, rows)
        path = args.out / f"{name}.csv"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != content:
                stale.append(path.name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        print(f"{path.name:<28} {len(rows):>5} rows")
    if stale:
        print("stale seed files: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
