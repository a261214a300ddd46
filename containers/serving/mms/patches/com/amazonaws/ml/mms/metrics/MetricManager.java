package com.amazonaws.ml.mms.metrics;

import com.amazonaws.ml.mms.util.ConfigManager;
import java.util.Collections;
import java.util.List;

/**
 * The host metrics MMS would collect: none.
 *
 * <p>Replaces MMS 1.1.11's class of the same name (containers/serving/mms/PATCHES.md). MMS's
 * scheduleMetrics starts a Python process (mms/metrics/metric_collector.py: the interpreter,
 * psutil, the workers' memory) at start-up and then every metric_time_interval seconds, and
 * writes what it prints only to the MMS_METRICS logger, which log4j2.xml turns off. SageMaker
 * reports the instance's CPU, memory and disk itself. Each run took a core for tens of
 * milliseconds from the model's threads and the first model load. The same public members are
 * kept; the list stays empty.
 */
public final class MetricManager {

    private static final MetricManager INSTANCE = new MetricManager();
    private List<Metric> metrics = Collections.emptyList();

    private MetricManager() {}

    public static MetricManager getInstance() {
        return INSTANCE;
    }

    /** Schedules nothing: see the class comment. */
    public static void scheduleMetrics(ConfigManager configManager) {}

    public synchronized List<Metric> getMetrics() {
        return metrics;
    }

    public synchronized void setMetrics(List<Metric> metrics) {
        this.metrics = metrics;
    }
}
