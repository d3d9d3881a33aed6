# bench/chart.gp: build/reports/bench.png from report.py's chart table.
#   gnuplot -e "dat='chart.dat'; out='bench.png'" bench/chart.gp
# One cluster per row, one bar per server, each relative to the best peer on
# that row (echo rows: best of libuv, libevent, libev; real-client rows:
# redis-server or nginx), turned so that higher is always better. The dashed
# line at 1.0 is the goal for evloop.
set terminal pngcairo size 1400,650 font "sans,10" noenhanced
set output out
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top
set grid ytics
# Ratios: a log scale shows 0.5x and 2x as equally far from 1.0, and keeps
# the raw loop's large leads (instructions, memory) from flattening the rest.
set logscale y 2
set yrange [0.0625:8]
set ytics ("1/16" 0.0625, "1/8" 0.125, "1/4" 0.25, "1/2" 0.5, "0.8" 0.8, "1" 1, "1.25" 1.25, "2" 2, "4" 4, "8" 8)
set ylabel "relative to the best peer on the row (log scale, higher is better)"
set title "evloop bench: medians, each row normalised to its best peer (memory and instructions inverted)"
set xtics rotate by -25 scale 0
set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2 lw 1.5 front
plot dat using 2:xtic(1) title columnheader(2) lc rgb "#d62728", \
     '' using 3 title columnheader(3) lc rgb "#1f77b4", \
     '' using 4 title columnheader(4) lc rgb "#2ca02c", \
     '' using 5 title columnheader(5) lc rgb "#9467bd", \
     '' using 6 title columnheader(6) lc rgb "#7f7f7f", \
     '' using 7 title columnheader(7) lc rgb "#ff7f0e"
