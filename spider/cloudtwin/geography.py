"""Real cities that emulated regions sit in, and the words provider names come from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class City:
    """A place a region can be: `region` is the region's name (`{country}-{city}`)."""

    region: str
    display: str
    latitude: float
    longitude: float


CITIES: tuple[City, ...] = (
    City("kr-seoul", "Seoul, South Korea", 37.5665, 126.9780),
    City("kr-busan", "Busan, South Korea", 35.1796, 129.0756),
    City("jp-tokyo", "Tokyo, Japan", 35.6762, 139.6503),
    City("jp-osaka", "Osaka, Japan", 34.6937, 135.5023),
    City("cn-beijing", "Beijing, China", 39.9042, 116.4074),
    City("cn-shanghai", "Shanghai, China", 31.2304, 121.4737),
    City("hk-hongkong", "Hong Kong", 22.3193, 114.1694),
    City("tw-taipei", "Taipei, Taiwan", 25.0330, 121.5654),
    City("sg-singapore", "Singapore", 1.3521, 103.8198),
    City("id-jakarta", "Jakarta, Indonesia", -6.2088, 106.8456),
    City("th-bangkok", "Bangkok, Thailand", 13.7563, 100.5018),
    City("in-mumbai", "Mumbai, India", 19.0760, 72.8777),
    City("in-chennai", "Chennai, India", 13.0827, 80.2707),
    City("au-sydney", "Sydney, Australia", -33.8688, 151.2093),
    City("au-melbourne", "Melbourne, Australia", -37.8136, 144.9631),
    City("ae-dubai", "Dubai, UAE", 25.2048, 55.2708),
    City("il-telaviv", "Tel Aviv, Israel", 32.0853, 34.7818),
    City("za-johannesburg", "Johannesburg, South Africa", -26.2041, 28.0473),
    City("za-capetown", "Cape Town, South Africa", -33.9249, 18.4241),
    City("eg-cairo", "Cairo, Egypt", 30.0444, 31.2357),
    City("ng-lagos", "Lagos, Nigeria", 6.5244, 3.3792),
    City("de-frankfurt", "Frankfurt, Germany", 50.1109, 8.6821),
    City("gb-london", "London, United Kingdom", 51.5074, -0.1278),
    City("ie-dublin", "Dublin, Ireland", 53.3498, -6.2603),
    City("fr-paris", "Paris, France", 48.8566, 2.3522),
    City("nl-amsterdam", "Amsterdam, Netherlands", 52.3676, 4.9041),
    City("se-stockholm", "Stockholm, Sweden", 59.3293, 18.0686),
    City("fi-helsinki", "Helsinki, Finland", 60.1699, 24.9384),
    City("it-milan", "Milan, Italy", 45.4642, 9.1900),
    City("es-madrid", "Madrid, Spain", 40.4168, -3.7038),
    City("ch-zurich", "Zurich, Switzerland", 47.3769, 8.5417),
    City("pl-warsaw", "Warsaw, Poland", 52.2297, 21.0122),
    City("us-virginia", "Ashburn, Virginia, USA", 39.0438, -77.4874),
    City("us-ohio", "Columbus, Ohio, USA", 39.9612, -82.9988),
    City("us-oregon", "Portland, Oregon, USA", 45.5152, -122.6784),
    City("us-california", "San Jose, California, USA", 37.3382, -121.8863),
    City("us-texas", "Dallas, Texas, USA", 32.7767, -96.7970),
    City("us-chicago", "Chicago, Illinois, USA", 41.8781, -87.6298),
    City("ca-montreal", "Montreal, Canada", 45.5019, -73.5674),
    City("ca-toronto", "Toronto, Canada", 43.6532, -79.3832),
    City("br-saopaulo", "Sao Paulo, Brazil", -23.5505, -46.6333),
    City("cl-santiago", "Santiago, Chile", -33.4489, -70.6693),
    City("mx-queretaro", "Queretaro, Mexico", 20.5888, -100.3899),
    City("co-bogota", "Bogota, Colombia", 4.7110, -74.0721),
)

# Provider names: sky and weather words, numbered once they run out.
SKY_WORDS: tuple[str, ...] = (
    "aurora", "nimbus", "cirrus", "stratus", "cumulus", "zephyr", "monsoon", "tempest",
    "mistral", "sirocco", "chinook", "squall", "drizzle", "thunder", "halo", "rainbow",
    "breeze", "gale", "frost", "solstice", "equinox", "twilight", "meteor", "comet",
    "nebula", "horizon", "vapor", "cyclone", "typhoon", "zenith",
)
