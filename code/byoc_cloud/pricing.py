"""Cost estimates from the price table in prices.json (edit it for your region and date)."""
import json
from dataclasses import dataclass, field
from pathlib import Path

PRICES = Path(__file__).with_name("prices.json")
HOURS_PER_MONTH = 730


class UnknownPrice(KeyError):
    pass


@dataclass
class PriceTable:
    region: str
    currency: str
    spot_discount: float
    training: dict[str, float]
    hosting: dict[str, float]
    transform: dict[str, float] = field(default_factory=dict)
    serverless: dict[str, float] = field(default_factory=dict)  # per GB-second: compute, provisioned

    @classmethod
    def load(cls, path: Path = PRICES) -> "PriceTable":
        raw = json.loads(Path(path).read_text())
        return cls(raw["region"], raw["currency"], raw["spot_discount"], raw["training"], raw["hosting"],
                   raw.get("transform", {}), raw.get("serverless", {}))

    def _price(self, table: dict, kind: str, instance_type: str) -> float:
        try:
            return table[instance_type]
        except KeyError:
            raise UnknownPrice(f"no {kind} price for {instance_type} in {PRICES.name}: add it, "
                               f"or pick one of {', '.join(sorted(table))}") from None

    def training_estimate(self, instance_type: str, count: int, max_run_s: int, spot: bool) -> str:
        hourly = self._price(self.training, "training", instance_type) * count
        most = hourly * max_run_s / 3600
        line = (f"estimated cost: {count} x {instance_type} at {hourly / count:.3f} {self.currency}/h on-demand "
                f"({self.region}); at most {most:.2f} {self.currency} on-demand for the full "
                f"{max_run_s / 3600:g} h limit")
        if spot:
            line += (f", about {most * (1 - self.spot_discount):.2f} {self.currency} on spot "
                     f"(assuming {self.spot_discount:.0%} off)")
        return line

    def tuning_estimate(self, instance_type: str, count: int, max_run_s: int, spot: bool, jobs: int,
                        parallel: int) -> str:
        """The worst case: every trial runs to its time limit."""
        hourly = self._price(self.training, "training", instance_type) * count
        most = hourly * max_run_s / 3600 * jobs
        rounds = -(-jobs // parallel)
        line = (f"estimated cost: at most {jobs} trials ({parallel} at a time) of {count} x {instance_type} at "
                f"{hourly / count:.3f} {self.currency}/h on-demand ({self.region}); at most {most:.2f} "
                f"{self.currency} on-demand if every trial runs its full {max_run_s / 3600:g} h limit "
                f"(about {rounds * max_run_s / 3600:g} h end to end)")
        if spot:
            line += (f", about {most * (1 - self.spot_discount):.2f} {self.currency} on spot "
                     f"(assuming {self.spot_discount:.0%} off)")
        return line

    def hosting_estimate(self, instance_type: str, min_count: int, max_count: int) -> str:
        hourly = self._price(self.hosting, "hosting", instance_type)
        return (f"estimated cost: {instance_type} at {hourly:.3f} {self.currency}/h ({self.region}); "
                f"{min_count * hourly:.2f}-{max_count * hourly:.2f} {self.currency}/h for {min_count}-{max_count} "
                f"instances, {min_count * hourly * HOURS_PER_MONTH:.0f}-{max_count * hourly * HOURS_PER_MONTH:.0f} "
                f"{self.currency} per month while it runs")

    def transform_estimate(self, instance_type: str, count: int) -> str:
        hourly = self._price(self.transform, "batch transform", instance_type)
        return (f"estimated cost: {count} x {instance_type} at {hourly:.3f} {self.currency}/h ({self.region}): "
                f"{count * hourly:.2f} {self.currency} per hour the job runs, billed from the instances' start "
                "to the job's end")

    def serverless_estimate(self, memory_mb: int, provisioned: int) -> str:
        gb = memory_mb / 1024
        per_second = self._price(self.serverless, "serverless", "compute_gb_second") * gb
        line = (f"estimated cost: serverless, {memory_mb} MB: {per_second * 1000:.3f} {self.currency} per 1,000 "
                f"seconds of requests running ({self.region}), nothing while idle")
        if provisioned:
            kept = self._price(self.serverless, "serverless", "provisioned_gb_second") * gb * provisioned * 3600
            line += (f"; {provisioned} provisioned: {kept:.2f} {self.currency}/h while provisioned, "
                     f"{kept * HOURS_PER_MONTH:.0f} {self.currency} per month")
        return line
