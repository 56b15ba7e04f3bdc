"""The kube-proxy and DNS stand-ins' listing keeps the order of its changes."""

import time

from service_proxy import Listing

PROPAGATION_SECONDS = 0.05
# Two timers due at one instant fire in either order: here one pair in ten came out reversed.
PAIRS = 2000


def test_two_changes_made_together_land_in_the_order_they_were_made() -> None:
    listings = [Listing(PROPAGATION_SECONDS, ["old"]) for _ in range(PAIRS)]
    for listing in listings:
        # A rollout's step: the new pod listed, then the old one delisted.
        listing.change(["old", "new"])
        listing.change(["new"])
    time.sleep(PROPAGATION_SECONDS + 1)
    assert [listing.current for listing in listings] == [["new"]] * PAIRS
