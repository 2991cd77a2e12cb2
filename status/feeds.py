"""Atom and RSS feeds of incidents (django.contrib.syndication).

Every link is absolute at ``STATUS_PUBLIC_URL``, so the same feed serves the
app and the static copy.
"""

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.utils.feedgenerator import Atom1Feed

from status import selectors
from status.api import public_link

FEED_ITEMS = 50


class IncidentsRss(Feed):
    title = "Kreo status: incidents"
    description = "Incidents and their updates on the Kreo status page."

    def link(self):
        return settings.STATUS_PUBLIC_URL

    def feed_url(self):
        return public_link("history.rss")

    def items(self):
        return selectors.incidents_all()[:FEED_ITEMS]

    def item_title(self, item):
        return f"{item.title} ({item.get_status_display()})"

    def item_description(self, item):
        # Plain text: the feed generator escapes it, so HTML in an update
        # arrives as the characters typed.
        lines = [
            f"{u.created_at:%Y-%m-%d %H:%M} UTC - {u.get_status_display()}: {u.body}"
            for u in item.updates.all()
        ]
        return "\n".join(lines) or item.title

    def item_link(self, item):
        return public_link(item.get_absolute_url())

    def item_guid(self, item):
        return public_link(item.get_absolute_url())

    def item_pubdate(self, item):
        return item.created_at

    def item_updateddate(self, item):
        return item.updated_at


class IncidentsAtom(IncidentsRss):
    feed_type = Atom1Feed
    subtitle = IncidentsRss.description

    def feed_url(self):
        return public_link("history.atom")
